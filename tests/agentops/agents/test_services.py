from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from agentops.agent_config import agent_config_for
from agentops.agents.services import (
    agent_version_create,
    agent_version_derive,
    agent_version_publish,
)
from agentops.models import Agent, AgentVersion, AuditEntry, Run
from agentops.runtime.services import runs_reconcile, session_create, session_post_message
from tests.agentops.runtime.helpers import agent_with_python_tools, wait_for_run
from tests.factories import AgentFactory, EndpointFactory


def test_it_saves_a_version_per_change_and_none_for_no_change(alice) -> None:
    agent = AgentFactory(system_prompt="Be brief.")
    first = agent_version_create(agent=agent, author=alice, note="first")
    assert (first.number, first.author, first.note) == (1, alice, "first")
    assert agent_version_create(agent=agent, author=alice).pk == first.pk

    agent.system_prompt = "Be thorough."
    agent.save()
    second = agent_version_create(agent=agent, author=alice, note="longer answers")
    assert second.number == 2
    assert second.config["system_prompt"] == "Be thorough."
    assert first.config["system_prompt"] == "Be brief."
    assert AuditEntry.objects.filter(action="agent.version", target=agent.slug).count() == 2


def test_it_snapshots_tools_and_fallbacks(alice) -> None:
    agent = agent_with_python_tools(AgentFactory())
    backup = EndpointFactory()
    agent.fallbacks.create(position=0, endpoint=backup, model="backup-model")
    version = agent_version_create(agent=agent, author=alice)
    assert version.config["tools"] == sorted(agent.tools.values_list("pk", flat=True))
    assert version.config["fallbacks"] == [{"endpoint": backup.pk, "model": "backup-model"}]

    config = agent_config_for(agent=agent, version=version)
    assert config.candidates[1] == (backup, "backup-model")
    assert config.version_number == 1


def test_it_rolls_back_by_publishing_an_older_version(alice) -> None:
    agent = agent_with_python_tools(AgentFactory(system_prompt="v1 prompt"))
    v1 = agent_version_create(agent=agent, author=alice, publish=True)
    agent.system_prompt = "v2 prompt"
    agent.save()
    agent.tools.clear()
    v2 = agent_version_create(agent=agent, author=alice, publish=True)
    agent.refresh_from_db()
    assert agent.published_version == v2

    agent_version_publish(version=v1, actor=alice)
    agent.refresh_from_db()
    assert agent.published_version == v1
    assert agent.system_prompt == "v1 prompt"
    assert sorted(agent.tools.values_list("pk", flat=True)) == v1.config["tools"] != []
    assert v2.config["tools"] == []
    entry = AuditEntry.objects.filter(action="agent.publish").order_by("-pk").first()
    assert entry is not None and entry.detail["previous_version_id"] == v2.pk


def test_it_derives_an_unpublished_version_without_touching_the_agent(alice) -> None:
    agent = AgentFactory(model="model-a", temperature=None)
    v1 = agent_version_create(agent=agent, author=alice, publish=True)
    derived = agent_version_derive(
        version=v1, changes={"model": "model-b", "temperature": 0.2}, author=alice
    )
    agent.refresh_from_db()
    assert (derived.number, derived.derived_from, derived.published_at) == (2, v1, None)
    assert derived.config["model"] == "model-b"
    assert (agent.model, agent.published_version) == ("model-a", v1)
    # The next saved change is numbered after it, and compares with the saved line.
    assert agent_version_create(agent=agent, author=alice).pk == v1.pk


def test_it_stores_a_change_as_cleaned_so_runs_read_it_as_they_expect(alice) -> None:
    v1 = agent_version_create(agent=AgentFactory(), author=alice)
    backup = EndpointFactory()
    derived = agent_version_derive(
        version=v1,
        changes={
            "max_steps": "7",
            "temperature": "1",
            "fallbacks": [{"endpoint": backup.pk}],
        },
        author=alice,
    )
    assert derived.config["max_steps"] == 7 and derived.config["temperature"] == 1.0
    assert derived.config["fallbacks"] == [{"endpoint": backup.pk, "model": ""}]
    agent_version_publish(version=derived, actor=alice)  # restores the row: no KeyError
    agent = Agent.objects.get(pk=v1.agent_id)
    assert agent.max_steps == 7 and agent.fallbacks.get().endpoint == backup


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_steps": 0}, "max_steps"),
        ({"endpoint": 999999}, "endpoint"),
        ({"endpoint": "x"}, "endpoint"),
        ({"tools": [999999]}, "tools"),
        ({"fallbacks": [{"endpoint": None}]}, "fallbacks"),
        ({"colour": "red"}, "colour"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": [1]}, "temperature"),
        ({"max_steps": "many"}, "max_steps"),
        ({"model": None}, "model"),
        ({"system_prompt": None}, "system_prompt"),
    ],
)
def test_it_refuses_a_bad_change_naming_the_field(alice, changes, field) -> None:
    v1 = agent_version_create(agent=AgentFactory(), author=alice)
    with pytest.raises(ValidationError) as caught:
        agent_version_derive(version=v1, changes=changes, author=alice)
    assert field in caught.value.message_dict
    assert AgentVersion.objects.filter(agent=v1.agent).count() == 1


def test_it_runs_a_session_pinned_to_a_version_with_that_version(alice, dev_agent) -> None:
    v1 = agent_version_create(agent=dev_agent, author=alice, publish=True)
    derived = agent_version_derive(version=v1, changes={"model": "other"}, author=alice)
    pinned = session_create(agent=dev_agent)
    pinned.agent_version = derived
    pinned.save()
    run = session_post_message(session=pinned, content="hello")
    plain = session_post_message(session=session_create(agent=dev_agent), content="hello")
    assert run is not None and plain is not None
    assert Run.objects.get(pk=run.pk).agent_version == derived
    assert Run.objects.get(pk=plain.pk).agent_version == v1


@pytest.mark.django_db(transaction=True)
def test_it_changes_the_next_run_and_not_the_running_one(devmodel, worker) -> None:
    endpoint = EndpointFactory(base_url=devmodel.url, default_model="unused")
    agent = agent_with_python_tools(
        AgentFactory(endpoint=endpoint, model="versions-a", system_prompt="prompt A")
    )
    v1 = agent_version_create(agent=agent, author=None, publish=True)
    # The running run's second model call is rate limited: it waits, and resumes in a new job
    # after v2 is published, so it reads its config again then.
    devmodel.script("versions-a", [{}, {"status": 429, "retry_after": 4}])
    running = session_post_message(session=session_create(agent=agent), content="chain 2 echo")
    assert running is not None
    waiting = wait_for_run(running.pk, statuses={"waiting"})

    agent.model, agent.system_prompt = "versions-b", "prompt B"
    agent.save()
    v2 = agent_version_create(agent=agent, author=None, publish=True)
    after = session_post_message(session=session_create(agent=agent), content="hello")
    assert after is not None
    assert runs_reconcile(now=waiting.wake_at + timedelta(seconds=1))["woken"] == 1

    assert wait_for_run(running.pk).status == "succeeded"
    assert wait_for_run(after.pk).status == "succeeded"
    first_calls = devmodel.requests("versions-a")
    assert len(first_calls) == 4  # the rate-limited call included
    assert {r["transcript"][0][1].split("\n")[0] for r in first_calls} == {"prompt A"}
    second_calls = devmodel.requests("versions-b")
    assert len(second_calls) == 1
    assert second_calls[0]["transcript"][0][1].startswith("prompt B")
    assert Run.objects.get(pk=running.pk).agent_version == v1
    assert Run.objects.get(pk=after.pk).agent_version == v2

    # Rollback: the next run is v1 again.
    agent_version_publish(version=v1, actor=None)
    again = session_post_message(session=session_create(agent=agent), content="hello")
    assert again is not None
    assert wait_for_run(again.pk).status == "succeeded"
    assert len(devmodel.requests("versions-a")) == 5
    assert Run.objects.get(pk=again.pk).agent_version == v1
