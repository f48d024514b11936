"""Forks and experiments of turns that reached other agents: an agent asked as a tool is
answered from the origin run's recording (no child run), a transfer's target replays what the
origin's own target did. Real worker processes, the dev model over HTTP, the test tools'
side-effect log as the world that must not change."""

from __future__ import annotations

import json

import pytest

from agentops.agent_config import agent_tools_validate, transfers_validate
from agentops.agents.services import agent_version_create
from agentops.models import (
    Agent,
    ForkOutcome,
    ForkTools,
    Message,
    Role,
    Run,
    RunStatus,
    Session,
    ToolCall,
)
from agentops.runtime.services import run_fork, session_create, session_post_message
from agentops.testing.tools import side_effects_log
from tests.agentops.runtime.helpers import side_effects_forget, spans, wait_for_run
from tests.factories import AgentFactory
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)


def published(agent: Agent, **fields: object) -> Agent:
    if "agent_tools" in fields:
        fields["agent_tools"] = agent_tools_validate(
            value=fields["agent_tools"], agent_slug=agent.slug
        )
    if "transfers" in fields:
        fields["transfers"] = transfers_validate(value=fields["transfers"], agent_slug=agent.slug)
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.save()
    agent.tools.add(*python_tools_sync())  # side_effect: not idempotent
    agent_version_create(agent=agent, author=None, publish=True)
    agent.refresh_from_db()
    return agent


def executions() -> list[dict]:
    """What the test tools really did, across processes."""
    log = side_effects_log()
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def change(label: str) -> str:
    return "call side_effect " + json.dumps({"label": label, "seconds": 0})


def ask(*requests: str) -> str:
    """A message that makes the caller ask the clerk each request in turn."""
    return "\n".join("call ask_clerk " + json.dumps({"request": r}) for r in requests)


def tool_results(run: Run) -> list[str]:
    return list(
        Message.objects.filter(run=run, role=Role.TOOL)
        .order_by("seq")
        .values_list("content", flat=True)
    )


def fork_outcomes(run: Run) -> list[str]:
    return [s.attributes["fork.outcome"] for s in spans(run.pk, "tool.fork")]


@pytest.fixture
def research(dev_agent):  # type: ignore[no-untyped-def]
    """A caller that may ask the clerk, who makes changes (side_effect) when asked to."""
    published(AgentFactory(slug="clerk", name="Clerk", endpoint=dev_agent.endpoint))
    return published(
        dev_agent,
        slug="research",
        max_steps=10,
        agent_tools=[{"agent": "clerk", "description": "makes changes to orders"}],
    )


@pytest.fixture
def origin(worker, research):  # type: ignore[no-untyped-def]
    """A finished turn that asked the clerk once, who changed refund-1 for real."""
    side_effects_forget()
    session = session_create(agent=research, external_user="erin")
    run = wait_for_run(session_post_message(session=session, content=ask(change("refund-1"))).pk)
    assert run.status == RunStatus.SUCCEEDED, (run.error_class, run.error_message)
    assert Run.objects.filter(parent_run=run).count() == 1
    assert tool_results(run) == ["Tool results: changed refund-1"]
    assert len(executions()) == 1
    return run


def test_a_fork_answers_an_agent_call_from_the_recording_without_a_child_run(origin):
    fork = wait_for_run(run_fork(run=origin, step=0).pk)
    assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
    assert not Run.objects.filter(parent_run=fork).exists()  # the clerk was not asked again
    assert len(executions()) == 1  # nor was anything changed again
    assert tool_results(fork) == tool_results(origin)
    (row,) = ToolCall.objects.filter(run=fork)
    assert (row.tool_name, row.fork_outcome, row.status) == ("ask_clerk", "replayed", "succeeded")
    assert row.arguments == {"request": change("refund-1")}
    assert row.result == "Tool results: changed refund-1"
    (event,) = spans(fork.pk, "tool.fork")
    (child,) = Run.objects.filter(parent_run=origin)
    assert event.attributes["fork.outcome"] == ForkOutcome.REPLAYED
    assert event.attributes["fork.recorded_child_run"] == str(child.pk)
    final = Message.objects.filter(run=fork, role=Role.ASSISTANT).order_by("-seq")[0]
    assert final.content == "Tool results: Tool results: changed refund-1"


def test_a_fork_of_that_fork_replays_the_replayed_answer(origin):
    """The first fork's recording of the call is its replayed answer (it has no child run)."""
    first = wait_for_run(run_fork(run=origin, step=0).pk)
    second = wait_for_run(run_fork(run=first, step=0).pk)
    assert second.status == RunStatus.SUCCEEDED, (second.error_class, second.error_message)
    assert not Run.objects.filter(parent_run=second).exists()
    assert tool_results(second) == ["Tool results: changed refund-1"]
    assert fork_outcomes(second) == [ForkOutcome.REPLAYED]
    assert len(executions()) == 1


def test_each_call_takes_the_next_recording_and_copied_ones_count(worker, research):
    side_effects_forget()
    session = session_create(agent=research, external_user="erin")
    twice = ask(change("refund-1"), change("refund-1"))
    origin = wait_for_run(session_post_message(session=session, content=twice).pk)
    assert origin.status == RunStatus.SUCCEEDED, (origin.error_class, origin.error_message)
    first, second = Run.objects.filter(parent_run=origin).order_by("created_at")
    assert len(executions()) == 2  # two clerk runs, each changed it
    # Steps: 1 the first ask, 2 its answer, 3 the second ask, 4 its answer, 5 the reply.
    whole = wait_for_run(run_fork(run=origin, step=0).pk)
    after_first = wait_for_run(run_fork(run=origin, step=2).pk)
    for fork in (whole, after_first):
        assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
        assert not Run.objects.filter(parent_run=fork).exists()
    recorded = [s.attributes["fork.recorded_child_run"] for s in spans(whole.pk, "tool.fork")]
    assert recorded == [str(first.pk), str(second.pk)]
    (replayed,) = spans(after_first.pk, "tool.fork")  # the first answer was copied
    assert replayed.attributes["fork.recorded_child_run"] == str(second.pk)
    # A fork of that fork from the start: its first call is answered by the origin's child
    # whose answer the first fork copied, its second by the first fork's replay.
    again = wait_for_run(run_fork(run=after_first, step=0).pk)
    assert again.status == RunStatus.SUCCEEDED, (again.error_class, again.error_message)
    assert not Run.objects.filter(parent_run=again).exists()
    events = spans(again.pk, "tool.fork")
    assert [e.attributes["fork.outcome"] for e in events] == [ForkOutcome.REPLAYED] * 2
    assert [e.attributes.get("fork.recorded_child_run") for e in events] == [str(first.pk), None]
    assert len(executions()) == 2


def test_an_agent_call_the_origin_did_not_make_asks_the_agent_inside_the_sandbox(origin):
    """No recording: the clerk is asked for real, in a child session that keeps the fork's
    policy, so its own change is refused (nothing recorded it) instead of made."""
    fork = wait_for_run(run_fork(run=origin, step=0, content=ask(change("refund-2"))).pk)
    assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
    (child,) = Run.objects.filter(parent_run=fork)
    assert child.status == RunStatus.SUCCEEDED, (child.error_class, child.error_message)
    assert (child.session.sandbox, child.session.fork_tools) == (True, ForkTools.REPLAY)
    assert fork_outcomes(fork) == [ForkOutcome.EXECUTED]  # the clerk was asked
    assert fork_outcomes(child) == [ForkOutcome.REFUSED]  # its change was not made
    assert len(executions()) == 1
    (result,) = tool_results(fork)
    assert result.startswith("Tool results: Not executed in a fork: side_effect")


def test_a_fork_that_allows_side_effects_asks_the_agent_again(origin):
    fork = wait_for_run(run_fork(run=origin, step=0, allow_side_effects=True).pk)
    assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
    (child,) = Run.objects.filter(parent_run=fork)
    assert child.session.fork_tools == ForkTools.ALLOW
    assert fork_outcomes(fork) == [ForkOutcome.EXECUTED]
    assert fork_outcomes(child) == [ForkOutcome.EXECUTED]
    assert len(executions()) == 2  # allowed: the clerk changed it again
    assert tool_results(fork) == ["Tool results: changed refund-1"]


# -- transfers -------------------------------------------------------------------------------
@pytest.fixture
def triage(dev_agent):  # type: ignore[no-untyped-def]
    """Triage passes anything about a refund to billing by rule, before any model call;
    billing makes changes."""
    published(AgentFactory(slug="billing", name="Billing", endpoint=dev_agent.endpoint))
    return published(
        dev_agent,
        slug="triage",
        name="Triage",
        transfers=[
            {"agent": "billing", "description": "Billing: invoices", "when": {"pattern": "refund"}}
        ],
    )


def successor(run: Run) -> Run:
    nxt = Run.objects.get(transferred_from=run)
    return wait_for_run(nxt.pk)


def test_a_forks_transfer_target_answers_and_replays_what_the_origins_target_did(worker, triage):
    side_effects_forget()
    session = session_create(agent=triage, external_user="erin")
    first = wait_for_run(session_post_message(session=session, content=change("refund-1")).pk)
    assert first.wait_reason == "transferred to billing", (first.status, first.error_message)
    billing = successor(first)
    assert billing.status == RunStatus.SUCCEEDED, (billing.error_class, billing.error_message)
    assert tool_results(billing) == ["changed refund-1"]
    assert len(executions()) == 1

    fork = wait_for_run(run_fork(run=first, step=0).pk)
    assert fork.wait_reason == "transferred to billing", (fork.status, fork.error_message)
    target = successor(fork)
    assert target.status == RunStatus.SUCCEEDED, (target.error_class, target.error_message)
    # The target answered in the fork (the fork's session stays on what it tests) ...
    assert target.agent.slug == "billing" and target.session_id == fork.session_id
    assert Session.objects.get(pk=fork.session_id).agent == triage
    answer = Message.objects.filter(run=target, role=Role.ASSISTANT).order_by("-seq")[0]
    assert answer.content == "Tool results: changed refund-1"
    # ... and replayed the origin target's change instead of making it again.
    assert (target.forked_from_id, target.forked_at_step) == (billing.pk, None)
    assert fork_outcomes(target) == [ForkOutcome.REPLAYED]
    assert ToolCall.objects.get(run=target).fork_outcome == ForkOutcome.REPLAYED
    assert len(executions()) == 1


# -- experiments -----------------------------------------------------------------------------
def test_an_experiment_replays_the_items_agent_calls_and_asks_unrecorded_ones_in_the_sandbox(
    origin, alice
):
    from agentops.experiments.models import Dataset, Result
    from agentops.experiments.services import dataset_item_create, dataset_item_from_run
    from tests.agentops.experiments.helpers import experiment_run

    version = origin.agent.published_version
    dataset = Dataset.objects.create(name="clerk calls")
    recorded = dataset_item_from_run(dataset=dataset, run=origin, actor=alice)
    unrecorded = dataset_item_create(
        dataset=dataset,
        input=ask(change("refund-2")),
        reference="changed refund-2",
        actor=alice,
    )
    experiment_run(dataset=dataset, version=version, actor=alice)

    assert len(executions()) == 1  # the experiment changed nothing in the world
    replayed = Result.objects.get(item=recorded)
    assert replayed.output == "Tool results: Tool results: changed refund-1"
    assert not Run.objects.filter(parent_run_id=replayed.run_id).exists()
    assert ToolCall.objects.get(run_id=replayed.run_id).fork_outcome == ForkOutcome.REPLAYED
    asked = Result.objects.get(item=unrecorded)
    assert asked.output.startswith("Tool results: Tool results: Not executed in a fork")
    (child,) = Run.objects.filter(parent_run_id=asked.run_id)
    assert child.session.fork_tools == ForkTools.REPLAY and child.session.sandbox
