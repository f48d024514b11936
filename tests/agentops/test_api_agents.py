"""The agents, versions and feedback API: roles, 4xx naming the field, versions on update,
diff, publish/rollback, derive, feedback replaced on re-scoring, the OpenAPI schema."""

from __future__ import annotations

import pytest
from django.test import Client

from agentops.agents.services import agent_version_create
from agentops.auth import api_key_create
from agentops.models import Agent, AgentVersion, Feedback, Message, Role, Run
from tests.factories import AgentFactory, EndpointFactory, SessionFactory, ToolFactory

pytestmark = pytest.mark.django_db


def auth(user) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {api_key_create(user=user, name='t')[1]}"}


def post(client: Client, path: str, body: dict, user, method: str = "post"):
    return getattr(client, method)(path, body, content_type="application/json", **auth(user))


def test_it_creates_an_agent_and_names_a_bad_field(client, alice):
    endpoint = EndpointFactory(name="main")
    tool = ToolFactory(name="lookup")
    body = {
        "slug": "support",
        "name": "Support",
        "endpoint": endpoint.pk,
        "system_prompt": "Be kind.",
        "tools": [tool.pk],
        "fallbacks": [{"endpoint": endpoint.pk, "model": "small"}],
        "note": "first",
        "publish": True,
    }
    for changes, field in [
        ({"slug": "Bad Slug"}, "slug"),
        ({"endpoint": 999999}, "endpoint"),
        ({"tools": [999999]}, "tools"),
        ({"max_steps": 0}, "max_steps"),
        ({"temperature": 5}, "temperature"),
        ({"fallbacks": [{"endpoint": 999999}]}, "fallbacks"),
        ({"name": ""}, "name"),
    ]:
        response = post(client, "/api/agents", {**body, **changes}, alice)
        assert response.status_code == 422, (changes, response.content)
        assert response.json()["field"].split(".")[0] == field, response.json()
    assert not Agent.objects.exists()

    response = post(client, "/api/agents", body, alice)
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["number"], data["published"], data["note"], data["author"]) == (
        1,
        True,
        "first",
        "alice",
    )
    assert data["config"]["tools"] == [tool.pk]
    assert post(client, "/api/agents", body, alice).json()["field"] == "slug"


def test_it_updates_an_agent_as_a_new_version_and_keeps_it_on_bad_input(client, alice):
    agent = AgentFactory(slug="support", system_prompt="Old", max_steps=5)
    v1 = agent_version_create(agent=agent, author=alice, publish=True)
    response = post(
        client, "/api/agents/support", {"system_prompt": "New", "note": "n"}, alice, "patch"
    )
    assert response.status_code == 200, response.content
    assert (response.json()["number"], response.json()["published"]) == (2, False)
    agent.refresh_from_db()
    assert agent.published_version == v1 and agent.max_steps == 5

    bad = post(client, "/api/agents/support", {"max_steps": None}, alice, "patch")
    assert bad.status_code == 422 and bad.json()["field"] == "max_steps"
    bad = post(client, "/api/agents/support", {"endpoint": 999999}, alice, "patch")
    assert bad.status_code == 422 and bad.json()["field"] == "endpoint"
    assert AgentVersion.objects.filter(agent=agent).count() == 2
    agent.refresh_from_db()
    assert agent.system_prompt == "New"

    got = client.get("/api/agents/support", **auth(alice)).json()
    assert (got["published_version"], got["latest_version"]) == (1, 2)
    assert got["settings"]["system_prompt"] == "New"


def test_it_lists_diffs_publishes_rolls_back_and_derives(client, alice):
    main, backup = EndpointFactory(name="main"), EndpointFactory(name="backup")
    agent = AgentFactory(slug="support", endpoint=main, system_prompt="a\nb")
    agent_version_create(agent=agent, author=alice, publish=True)
    post(
        client,
        "/api/agents/support",
        {"endpoint": backup.pk, "system_prompt": "a\nc"},
        alice,
        "patch",
    )

    versions = client.get("/api/agents/support/versions", **auth(alice)).json()
    assert [v["number"] for v in versions] == [2, 1]
    diff = client.get("/api/agents/support/versions/2/diff", **auth(alice)).json()
    by_field = {c["field"]: c for c in diff["changes"]}
    assert diff["against"] == 1
    assert (by_field["endpoint"]["before"], by_field["endpoint"]["after"]) == ("main", "backup")
    assert "-b" in by_field["system_prompt"]["lines"] and "+c" in by_field["system_prompt"]["lines"]

    assert post(client, "/api/agents/support/versions/2/publish", {}, alice).json()["published"]
    back = post(client, "/api/agents/support/versions/1/publish", {}, alice).json()
    assert back["published"] and back["number"] == 1
    agent.refresh_from_db()
    assert agent.endpoint == main

    derived = post(
        client, "/api/agents/support/versions/1/derive", {"changes": {"model": "x"}}, alice
    )
    assert derived.status_code == 201 and derived.json()["derived_from"] == 1
    for changes, field in (
        ({"colour": 1}, "colour"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_steps": "many"}, "max_steps"),
        ({"fallbacks": [{"model": "x"}]}, "endpoint"),
    ):
        bad = post(client, "/api/agents/support/versions/1/derive", {"changes": changes}, alice)
        assert bad.status_code == 422 and field in str(bad.json()), (changes, bad.json())
    assert AgentVersion.objects.filter(agent=agent).count() == 3  # none stored
    missing = client.get("/api/agents/support/versions/99", **auth(alice))
    assert missing.status_code == 404


def test_it_lets_viewers_read_and_only_admins_change(client, bob, charlie):
    agent = AgentFactory(slug="support")
    agent_version_create(agent=agent, author=None)
    for user in (bob, charlie):
        assert client.get("/api/agents", **auth(user)).status_code == 200
        assert client.get("/api/agents/support/versions/1/diff", **auth(user)).status_code == 200
        assert post(client, "/api/agents/support", {"name": "x"}, user, "patch").status_code == 403
        assert post(client, "/api/agents/support/versions/1/publish", {}, user).status_code == 403
        assert (
            post(client, "/api/agents", {"slug": "x", "name": "x", "endpoint": 1}, user).status_code
            == 403
        )
    agent.refresh_from_db()
    assert agent.published_version is None


def test_it_takes_feedback_and_replaces_it_on_re_scoring(client, bob, charlie, alice):
    agent = AgentFactory(slug="support")
    v1 = agent_version_create(agent=agent, author=alice, publish=True)
    session = SessionFactory(agent=agent)
    run = Run.objects.create(session=session, agent=agent, agent_version=v1, status="succeeded")
    answer = Message.objects.create(
        session=session, seq=1, role=Role.ASSISTANT, content="hi", run=run
    )
    run_url, message_url = f"/api/runs/{run.pk}/feedback", f"/api/messages/{answer.pk}/feedback"
    first = post(client, run_url, {"rating": "down", "score": 1}, bob)
    assert first.status_code == 201 and first.json()["version"] == 1
    again = post(client, run_url, {"rating": "up", "comment": "ok"}, bob)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    on_message = post(client, message_url, {"rating": "up"}, bob)
    assert on_message.status_code == 201 and on_message.json()["run"] == str(run.pk)
    assert Feedback.objects.count() == 2

    for body, field in [
        ({}, "rating"),
        ({"rating": "meh"}, "rating"),
        ({"rating": "up", "score": 6}, "score"),
        ({"rating": "up", "comment": "x" * 2001}, "comment"),
    ]:
        response = post(client, run_url, body, bob)
        assert response.status_code == 422 and response.json()["field"] == field, body
    assert post(client, "/api/messages/999999/feedback", {"rating": "up"}, bob).status_code == 404
    assert post(client, run_url, {"rating": "up"}, charlie).status_code == 403

    listed = client.get("/api/feedback", {"run": str(run.pk)}, **auth(charlie)).json()
    assert {(f["rating"], f["message"]) for f in listed} == {("up", None), ("up", answer.pk)}
    assert Feedback.objects.get(message=None).comment == "ok"


def test_it_puts_agents_versions_and_feedback_in_the_schema(client, charlie):
    schema = client.get("/api/openapi.json", **auth(charlie)).json()
    for path in (
        "/api/agents",
        "/api/agents/{slug}",
        "/api/agents/{slug}/versions",
        "/api/agents/{slug}/versions/{number}/diff",
        "/api/agents/{slug}/versions/{number}/publish",
        "/api/agents/{slug}/versions/{number}/derive",
        "/api/feedback",
        "/api/runs/{run_id}/feedback",
        "/api/messages/{message_id}/feedback",
    ):
        assert path in schema["paths"], path
