"""Built-in tools (handoff_to_human, note, recall, remember) are shown in the builder and an
agent may turn each off (issue 21 item 9): part of the version, validated, all on for versions
saved before, and a turned-off one is never offered to the model (real worker, dev model)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from agentops.agent_config import BUILTIN_TOOLS, agent_config_build
from agentops.agents.selectors import version_diff
from agentops.agents.services import agent_create, agent_update
from agentops.models import Agent, AgentVersion, Message, Role, RunStatus
from agentops.runtime.services import session_create, session_post_message
from tests.agentops.agents.test_views import form_data
from tests.agentops.runtime.helpers import wait_for_run
from tests.factories import EndpointFactory
from tools.services import python_tools_sync


@pytest.mark.django_db
def test_it_validates_the_builtins_an_agent_turns_off(alice):  # type: ignore[no-untyped-def]
    endpoint = EndpointFactory()
    version = agent_create(slug="a", config={"name": "A", "endpoint": endpoint.pk}, author=alice)
    assert version.config["builtins_off"] == []
    agent = Agent.objects.get(slug="a")
    for bad in (["nope"], "note", [{"name": "note"}]):
        with pytest.raises(ValidationError) as error:
            agent_update(agent=agent, changes={"builtins_off": bad}, author=alice)
        assert "builtins_off" in error.value.message_dict
    v2 = agent_update(
        agent=agent, changes={"builtins_off": ["note", "note", "recall"]}, author=alice
    )
    assert v2.config["builtins_off"] == ["note", "recall"]
    (change,) = version_diff(version=v2)
    assert (change.label, change.before, change.after) == (
        "Built-in tools turned off",
        "none",
        "note, recall",
    )


@pytest.mark.django_db
def test_a_version_saved_before_builtins_could_be_turned_off_offers_them_all(alice):  # type: ignore[no-untyped-def]
    endpoint = EndpointFactory()
    agent_create(slug="old", config={"name": "Old", "endpoint": endpoint.pk}, author=alice)
    version = AgentVersion.objects.get(agent__slug="old")
    config = {k: v for k, v in version.config.items() if k != "builtins_off"}
    AgentVersion.objects.filter(pk=version.pk).update(config=config)
    built = agent_config_build(
        agent=version.agent, snapshot=config, version_id=version.pk, version_number=1
    )
    assert built.builtins == list(BUILTIN_TOOLS)
    # And saving it again with no change is no new version.
    same = agent_update(agent=Agent.objects.get(slug="old"), changes={}, author=alice)
    assert same.number == 1


@pytest.mark.django_db
def test_the_builder_shows_the_builtins_and_turns_one_off(alice):  # type: ignore[no-untyped-def]
    python_tools_sync()
    client = Client()
    client.force_login(alice)
    page = client.get("/agents/new").content.decode()
    for name in BUILTIN_TOOLS:
        assert f'value="{name}"' in page
    assert "Built-in tools" in page
    on = [b for b in BUILTIN_TOOLS if b != "handoff_to_human"]
    response = client.post("/agents/new", {**form_data(), "builtins": on, "save": "1"})
    assert response.status_code == 302
    version = AgentVersion.objects.get(agent__slug="support")
    assert version.config["builtins_off"] == ["handoff_to_human"]
    form = client.get("/agents/support/").context["form"]
    assert form.initial["builtins"] == on
    # The builtins are not also listed as ordinary tools to tick.
    assert not form.fields["tools"].queryset.filter(name__in=BUILTIN_TOOLS).exists()


@pytest.mark.django_db(transaction=True)
def test_a_turned_off_builtin_is_not_offered_and_a_call_to_it_is_refused(  # type: ignore[no-untyped-def]
    devmodel, worker, model_name, alice
):
    python_tools_sync()
    endpoint = EndpointFactory(base_url=devmodel.url, default_model=model_name)
    agent_create(
        slug="quiet",
        config={
            "name": "Quiet",
            "endpoint": endpoint.pk,
            "builtins_off": ["handoff_to_human", "note"],
            "retry_base_seconds": 0.01,
        },
        author=alice,
        publish=True,
    )
    session = session_create(agent=Agent.objects.get(slug="quiet"), external_user="u1")
    run = session_post_message(session=session, content="Please get me a human operator")
    assert run is not None
    finished = wait_for_run(run.pk)
    # With handoff_to_human offered the dev model would call it; it was not offered.
    assert finished.status == RunStatus.SUCCEEDED, finished.error_message
    (request,) = devmodel.requests(model_name)
    offered = {t["function"]["name"] for t in request["body"].get("tools") or []}
    assert {"remember", "recall"} <= offered
    assert not offered & {"handoff_to_human", "note"}

    # A model that calls it anyway is answered with a tool message, not obeyed.
    run = session_post_message(session=session, content='call note {"key": "k", "value": "v"}')
    assert run is not None
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    answer = Message.objects.get(session=session, role=Role.TOOL, run=run)
    assert "the tool note is turned off for this agent" in answer.content
    session.refresh_from_db()
    assert not session.scratchpad


@pytest.mark.django_db
def test_the_api_turns_builtins_off_and_names_a_bad_one(alice):  # type: ignore[no-untyped-def]
    endpoint = EndpointFactory()
    agent_create(slug="api", config={"name": "Api", "endpoint": endpoint.pk}, author=alice)
    client = Client()
    client.force_login(alice)
    response = client.patch(
        "/api/agents/api", {"builtins_off": ["remember"]}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["config"]["builtins_off"] == ["remember"]
    assert client.get("/api/agents/api").json()["settings"]["builtins_off"] == ["remember"]
    response = client.patch(
        "/api/agents/api", {"builtins_off": ["shell"]}, content_type="application/json"
    )
    assert response.status_code == 422 and response.json()["field"] == "builtins_off"
