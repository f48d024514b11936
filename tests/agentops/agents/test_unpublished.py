"""An agent saved but never published answers only in its draft chat (issue 21 item 10): the
API refuses it naming `agent`, Console and the widget key form do not offer it, /v1/ refuses
it; publishing a version makes it live everywhere."""

from __future__ import annotations

import openai
import pytest
from django.test import Client

from agentops.agents.services import agent_create, agent_version_publish
from agentops.auth import api_key_create
from agentops.models import Agent, Run, Session
from agentops.runtime.drafts import draft_session_start
from agentops.runtime.services import AgentNotLive, session_post_message
from tests.factories import EndpointFactory, SessionFactory

pytestmark = pytest.mark.django_db(transaction=True)


def auth(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


@pytest.fixture
def saved(alice, devmodel, model_name):  # type: ignore[no-untyped-def]
    """An agent saved in the builder (v1), not published."""
    endpoint = EndpointFactory(base_url=devmodel.url, default_model=model_name)
    agent_create(slug="fresh", config={"name": "Fresh", "endpoint": endpoint.pk}, author=alice)
    return Agent.objects.get(slug="fresh")


def test_the_api_refuses_an_unpublished_agent_naming_it(saved, alice, bob):  # type: ignore[no-untyped-def]
    key = api_key_create(user=bob, name="tests")[1]
    client = Client()
    response = client.post(
        "/api/sessions",
        {"agent": "fresh", "user": "u1"},
        content_type="application/json",
        **auth(key),
    )
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["field"] == "agent"
    assert "fresh has no published version" in body["error"]
    assert not Session.objects.filter(agent=saved, sandbox=False).exists()
    # A conversation that exists already (begun before) gets no run either.
    old = SessionFactory(agent=saved)
    response = client.post(
        f"/api/sessions/{old.pk}/messages",
        {"content": "hello"},
        content_type="application/json",
        **auth(key),
    )
    assert response.status_code == 409 and response.json()["field"] == "agent"
    assert not Run.objects.filter(session=old).exists()

    # Its draft chat runs it.
    draft = draft_session_start(agent=saved, author=alice)
    assert session_post_message(session=draft, content="hello") is not None

    agent_version_publish(version=saved.versions.get(number=1), actor=alice)
    response = client.post(
        "/api/sessions",
        {"agent": "fresh", "user": "u1"},
        content_type="application/json",
        **auth(key),
    )
    assert response.status_code == 201


def test_console_and_widget_keys_do_not_offer_an_unpublished_agent(saved, alice):  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(alice)
    form = client.get("/console/").context["form"]
    assert "fresh" not in [a.slug for a in form.fields["agent"].queryset]
    response = client.post("/console/sessions/new", {"agent": "fresh", "external_user": "x"})
    assert response.status_code == 400
    assert not Session.objects.filter(agent=saved, sandbox=False).exists()

    keys = client.get("/widget/keys/").context["form"]
    assert "fresh" not in [a.slug for a in keys.fields["agent"].queryset]
    response = client.post(
        "/widget/keys/",
        {
            "name": "shop",
            "agent": "fresh",
            "allowed_origins": "https://shop.example.com",
            "user_messages_per_minute": 10,
            "key_messages_per_minute": 300,
        },
    )
    assert response.status_code == 400
    assert "agent" in response.context["form"].errors

    agent_version_publish(version=saved.versions.get(number=1), actor=alice)
    form = client.get("/console/").context["form"]
    assert "fresh" in [a.slug for a in form.fields["agent"].queryset]


def test_the_openai_endpoint_refuses_an_unpublished_agent(saved, bob, web, worker):  # type: ignore[no-untyped-def]
    key = api_key_create(user=bob, name="openai")[1]
    client = openai.OpenAI(base_url=f"http://{web}/v1", api_key=key, max_retries=0, timeout=60)
    assert "fresh" not in [m.id for m in client.models.list()]
    with pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(
            model="fresh", messages=[{"role": "user", "content": "hello"}]
        )
    assert error.value.status_code == 409
    assert "fresh has no published version" in str(error.value)
    assert not Session.objects.filter(agent=saved, sandbox=False).exists()


def test_the_runtime_refuses_it_in_one_place(saved):  # type: ignore[no-untyped-def]
    from agentops.runtime.services import session_create

    with pytest.raises(AgentNotLive):
        session_create(agent=saved, external_user="x")


def test_a_widget_whose_agent_lost_its_live_settings_says_the_chat_is_not_open(alice, client):  # type: ignore[no-untyped-def]
    """An agent made directly in the database runs its settings; once an admin saves it in the
    builder (v1, not published) only its draft chat runs it: its widget says so, no 500."""
    from agentops.agents.services import agent_update
    from tests.agentops.widget.helpers import api, frame_token, make_key
    from tests.factories import AgentFactory

    agent = AgentFactory()
    key, _ = make_key(agent)
    token = frame_token(client, key)
    agent_update(agent=agent, changes={"name": "Renamed"}, author=alice)
    for path, body in (("session", {}), ("messages", {"content": "hello"})):
        response = api(client, path, token, body)
        assert response.status_code == 409, response.content
        assert "not open yet" in response.json()["error"]
    assert not Session.objects.filter(agent=agent).exists()
