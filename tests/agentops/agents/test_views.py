"""Agent builder pages: list, create, edit (versions), versions and diffs, publish/rollback,
the draft chat's context pane, and who may do what."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agentops.agents.services import agent_version_create
from agentops.models import (
    Agent,
    AgentVersion,
    AuditEntry,
    Feedback,
    Run,
    RunStatus,
    Session,
    Team,
)
from tests.factories import AgentFactory, EndpointFactory, SessionFactory, ToolFactory

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form_data(agent: Agent | None = None, **changes) -> dict:
    endpoint = agent.endpoint if agent else EndpointFactory(name="main")
    data = {
        "name": "Support",
        "system_prompt": "Be kind.",
        "endpoint": endpoint.pk,
        "model": "",
        "temperature": "",
        "fallbacks": "",
        "memory_enabled": "on",
        "recall_k": 5,
        "context_token_budget": 8000,
        "max_steps": 12,
        "max_concurrent_runs": "",
        "retry_max_attempts": 4,
        "retry_base_seconds": 0.5,
        "retry_cap_seconds": 30,
        "handoff_team": "",
        "note": "",
    }
    if agent is None:
        data["slug"] = "support"
    data.update(changes)
    return data


def test_it_creates_an_agent_with_its_first_version(alice):
    backup = EndpointFactory(name="backup")
    tool = ToolFactory(name="lookup", description="Looks things up.")
    team = Team.objects.create(slug="billing", name="Billing")
    data = form_data(
        tools=[tool.pk],
        fallbacks=f"{backup.name} small-model\n",
        handoff_team=team.pk,
        note="first try",
        temperature="0.3",
        max_concurrent_runs="3",
    )
    response = client_for(alice).post("/agents/new", {**data, "save": "1"})
    assert response.status_code == 302 and response["Location"] == "/agents/support/"
    agent = Agent.objects.get(slug="support")
    assert (agent.temperature, agent.max_concurrent_runs, agent.handoff_team) == (0.3, 3, team)
    assert list(agent.tools.all()) == [tool]
    assert [(f.endpoint, f.model) for f in agent.fallbacks.all()] == [(backup, "small-model")]
    version = AgentVersion.objects.get(agent=agent)
    assert (version.number, version.author, version.note) == (1, alice, "first try")
    assert agent.published_version is None  # "Save" does not publish


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"slug": "Not A Slug"}, "slug", "lowercase"),
        ({"max_steps": 0}, "max_steps", "greater than or equal to 1"),
        ({"temperature": "3"}, "temperature", "less than or equal to 2"),
        ({"fallbacks": "nowhere gpt"}, "fallbacks", "Line 1: no model endpoint named"),
        ({"context_token_budget": 10}, "context_token_budget", "256"),
        ({"endpoint": 999999}, "endpoint", "valid choice"),
    ],
)
def test_it_shows_form_errors_by_field_and_stores_nothing(alice, changes, field, message):
    response = client_for(alice).post("/agents/new", {**form_data(**changes), "save": "1"})
    assert response.status_code == 400
    page = response.content.decode()
    assert f'data-error-for="{field}"' in page and message in page
    assert not Agent.objects.exists()


def test_it_refuses_a_slug_taken_already(alice):
    AgentFactory(slug="support")
    response = client_for(alice).post("/agents/new", {**form_data(), "save": "1"})
    assert response.status_code == 400
    assert 'data-error-for="slug"' in response.content.decode()


def test_it_saves_a_version_per_edit_and_publishes_on_request(alice):
    agent = AgentFactory(slug="support", system_prompt="Old")
    v1 = agent_version_create(agent=agent, author=alice, publish=True)
    client = client_for(alice)
    response = client.post(
        "/agents/support/", {**form_data(agent, system_prompt="New", note="kinder"), "save": "1"}
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    v2 = AgentVersion.objects.get(agent=agent, number=2)
    assert (v2.note, v2.config["system_prompt"], agent.published_version) == ("kinder", "New", v1)

    client.post("/agents/support/", {**form_data(agent, system_prompt="New"), "publish": "1"})
    agent.refresh_from_db()
    assert agent.published_version == v2
    assert AgentVersion.objects.filter(agent=agent).count() == 2  # nothing changed: no v3


def test_it_keeps_the_agent_unchanged_when_an_edit_is_invalid(alice):
    agent = AgentFactory(slug="support", max_steps=7)
    agent_version_create(agent=agent, author=alice)
    response = client_for(alice).post(
        "/agents/support/", {**form_data(agent, max_steps=0, name="Renamed"), "save": "1"}
    )
    assert response.status_code == 400
    assert 'data-error-for="max_steps"' in response.content.decode()
    agent.refresh_from_db()
    assert agent.max_steps == 7 and agent.name != "Renamed"
    assert AgentVersion.objects.filter(agent=agent).count() == 1


def test_it_lets_operators_and_viewers_read_but_not_change(bob, charlie):
    agent = AgentFactory(slug="support", system_prompt="Secret sauce")
    v1 = agent_version_create(agent=agent, author=None)
    for user in (bob, charlie):
        client = client_for(user)
        assert client.get("/agents/").status_code == 200
        page = client.get("/agents/support/").content.decode()
        assert "Secret sauce" in page and "Save and publish" not in page
        assert client.get("/agents/support/versions/").status_code == 200
        assert client.get("/agents/new").status_code == 403
        assert client.post("/agents/support/", form_data(agent, name="X")).status_code == 403
        assert client.post("/agents/support/versions/1/publish").status_code == 403
        assert client.post("/agents/support/draft").status_code == 403
    agent.refresh_from_db()
    assert agent.published_version is None and agent.name != "X"
    assert AgentVersion.objects.get(agent=agent) == v1


def test_it_lists_agents_in_a_fixed_number_of_queries(charlie):
    client = client_for(charlie)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/agents/").status_code == 200
        return len(queries)

    agent = AgentFactory()
    agent_version_create(agent=agent, author=charlie, publish=True)
    few = count()
    for _ in range(4):
        other = AgentFactory()
        agent_version_create(agent=other, author=charlie, publish=True)
        Run.objects.create(session=SessionFactory(agent=other), agent=other, status="failed")
    assert count() == few


def test_it_shows_today_runs_failures_and_the_last_change(charlie, alice):
    agent = AgentFactory(slug="support")
    agent_version_create(agent=agent, author=alice, note="tone down", publish=True)
    session = SessionFactory(agent=agent)
    Run.objects.create(session=session, agent=agent, status=RunStatus.SUCCEEDED)
    Run.objects.create(session=session, agent=agent, status=RunStatus.FAILED)
    page = client_for(charlie).get("/agents/").content.decode()
    row = page[page.index('data-agent="support"') :]
    row = row[: row.index("</tr>")]
    assert "v1" in row and "tone down" in row and "alice" in row
    assert ">2</a>" in row and ">1</a>" in row


def test_it_shows_a_readable_diff_and_publishes_and_rolls_back(alice):
    main, backup = EndpointFactory(name="main"), EndpointFactory(name="backup")
    lookup = ToolFactory(name="lookup")
    agent = AgentFactory(slug="support", endpoint=main, system_prompt="Line one\nLine two")
    v1 = agent_version_create(agent=agent, author=alice, publish=True)
    agent.endpoint = backup
    agent.system_prompt = "Line one\nLine 2"
    agent.save()
    agent.tools.add(lookup)
    agent_version_create(agent=agent, author=alice, note="switch endpoint")
    client = client_for(alice)

    page = client.get("/agents/support/versions/2/").content.decode()
    assert 'data-change="endpoint"' in page and "<del>main</del> → <ins>backup</ins>" in page
    assert 'data-change="tools"' in page and "<ins>lookup</ins>" in page
    assert '<span class="del">-Line two</span>' in page
    assert '<span class="add">+Line 2</span>' in page
    listing = client.get("/agents/support/versions/").content.decode()
    assert "switch endpoint" in listing and "backup" in listing
    against_first = client.get("/agents/support/versions/2/?against=1")
    assert against_first.context["against"] == v1
    for odd in ("²", "99999999999", "x"):  # the previous version, as with none given
        assert client.get(f"/agents/support/versions/2/?against={odd}").context["against"] == v1
    assert client.get("/agents/support/versions/2/?against=7").status_code == 404

    assert client.post("/agents/support/versions/2/publish").status_code == 302
    agent.refresh_from_db()
    assert agent.published_version.number == 2 and agent.endpoint == backup
    response = client.post("/agents/support/versions/1/publish", follow=True)
    assert "Rolled back to v1" in response.content.decode()
    agent.refresh_from_db()
    assert agent.published_version == v1 and agent.endpoint == main
    assert AuditEntry.objects.filter(action="agent.publish", actor=alice).count() == 3


def test_it_starts_a_draft_chat_on_the_latest_saved_version_and_moves_it_on_save(alice):
    agent = AgentFactory(slug="support")
    v1 = agent_version_create(agent=agent, author=alice, publish=True)
    client = client_for(alice)
    assert client.post("/agents/support/draft").status_code == 302
    session = Session.objects.get(agent=agent)
    assert session.agent_version == v1 and session.created_by == alice
    page = client.get("/agents/support/").content.decode()
    assert 'id="draft-context"' in page and "Context window" in page and "data-convo" in page

    client.post("/agents/support/", {**form_data(agent, system_prompt="Changed"), "save": "1"})
    session.refresh_from_db()
    assert session.agent_version.number == 2
    agent.refresh_from_db()
    assert agent.published_version == v1
    context = client.get("/agents/support/draft/context").content.decode()
    assert "Changed" in context


def test_it_compares_versions_with_runs_and_feedback(alice, charlie):
    agent = AgentFactory(slug="support")
    v1 = agent_version_create(agent=agent, author=alice, publish=True)
    agent.system_prompt = "v2"
    agent.save()
    v2 = agent_version_create(agent=agent, author=alice, publish=True)
    session = SessionFactory(agent=agent)
    ok = Run.objects.create(session=session, agent=agent, agent_version=v1, status="succeeded")
    Run.objects.create(session=session, agent=agent, agent_version=v1, status="failed")
    Run.objects.create(session=session, agent=agent, agent_version=v2, status="succeeded")
    Feedback.objects.create(run=ok, author=charlie, rating="up", score=4)
    page = client_for(charlie).get("/agents/support/").content.decode()
    v1_row = page[page.index('<tr data-version="1"') :]
    v1_row = v1_row[: v1_row.index("</tr>")]
    assert ">2</a>" in v1_row and "50.0%" in v1_row and "100% 👍 of 1" in v1_row
    assert "4.0/5" in v1_row
