"""Agents as tools on real runs: real worker processes (one killed with SIGKILL), the real
openai client, the dev model over HTTP."""

import pytest

from agentops.agent_config import agent_tools_validate
from agentops.agents.services import agent_version_create
from agentops.models import Agent, Message, Role, Run, RunStatus
from agentops.runtime.services import session_create, session_post_message
from tests.agentops.runtime.helpers import spans, wait_for_run
from tests.factories import AgentFactory
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)


def published(agent: Agent, **fields) -> Agent:
    if "agent_tools" in fields:
        fields["agent_tools"] = agent_tools_validate(
            value=fields["agent_tools"], agent_slug=agent.slug
        )
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.save()
    agent.tools.add(*python_tools_sync())
    agent_version_create(agent=agent, author=None, publish=True)
    agent.refresh_from_db()
    return agent


@pytest.fixture
def research(dev_agent):
    summariser = AgentFactory(slug="summariser", name="Summariser", endpoint=dev_agent.endpoint)
    published(summariser)
    return published(
        dev_agent,
        slug="research",
        agent_tools=[{"agent": "summariser", "description": "summarises a text"}],
    )


@pytest.mark.slow
def test_a_killed_worker_leaves_exactly_one_child_and_the_caller_gets_its_answer(research):
    """First in the module: the module's shared worker (started by the tests below) must not
    exist yet, or it would take the runs from the worker this test kills."""
    from django.utils import timezone

    from agentops.jobs import runs_reconcile
    from agentops.runtime.services import runs_reconcile as reconcile
    from agentops.testing.chaos import kill
    from agentops.testing.processes import child_env, start_worker
    from tests.agentops.runtime.helpers import side_effects_forget, wait_for_side_effects

    side_effects_forget()
    env = child_env()
    session = session_create(agent=research, external_user="erin")
    ask = 'call ask_summariser {"request": "chain 1 slow_lookup 3"}'
    victim = start_worker(env, name="victim")
    try:
        run = session_post_message(session=session, content=ask)
        wait_for_side_effects(1)  # the child's tool is running
        assert kill(victim, "horse") is not None
    finally:
        victim.stop()
    (child,) = Run.objects.filter(parent_run=run)
    child.refresh_from_db()
    assert child.status == RunStatus.RUNNING
    rescuer = start_worker(env, name="rescuer")
    try:
        assert reconcile(now=child.heartbeat_at + timezone.timedelta(seconds=30))["recovered"] == 1
        run = wait_for_run(run.pk)
        runs_reconcile()  # the sweep: nothing left to wake
    finally:
        rescuer.stop()
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    (child,) = Run.objects.filter(parent_run=run)
    assert child.status == RunStatus.SUCCEEDED and child.epoch == 2  # resumed once
    answer = Message.objects.filter(session=session, role=Role.TOOL).get()
    assert answer.content == "Chain of 1 done."  # the child's answer, after its tool


def test_the_sweep_wakes_only_a_caller_waiting_for_that_child(research):
    """A caller that asked a child, read its answer and now waits for something else (an
    approval, a backoff) is not woken by that child having ended. (Before the tests that
    start the module's worker: nothing is to run the caller made here.)"""
    import django_rq
    from django.conf import settings

    from agentops.runtime.agent_calls import parents_reconcile
    from tests.factories import SessionFactory

    summariser = Agent.objects.get(slug="summariser")
    caller = Run.objects.create(session=SessionFactory(agent=research), agent=research)
    child = Run.objects.create(
        session=SessionFactory(agent=summariser),
        agent=summariser,
        parent_run=caller,
        parent_call_id="1:call_0",
        status=RunStatus.SUCCEEDED,
    )
    Run.objects.filter(pk=caller.pk).update(status=RunStatus.WAITING, state={})
    assert parents_reconcile() == 0
    Run.objects.filter(pk=caller.pk).update(state={"child": str(child.pk)})
    assert parents_reconcile() == 1
    assert Run.objects.get(pk=caller.pk).status == RunStatus.QUEUED
    django_rq.get_queue(settings.RUN_QUEUE).empty()  # a run made by hand: no worker runs it


def test_it_asks_another_agent_and_answers_with_its_answer(worker, research):
    session = session_create(agent=research, external_user="erin")
    ask = 'call ask_summariser {"request": "summarise the moon landing"}'
    run = wait_for_run(session_post_message(session=session, content=ask).pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    (child,) = Run.objects.filter(parent_run=run)
    assert child.status == RunStatus.SUCCEEDED and child.agent.slug == "summariser"
    assert child.session.title == f"Asked by {research.name}" and child.session != session
    result = Message.objects.get(session=session, role=Role.TOOL)
    assert result.content == "You said: summarise the moon landing"
    answer = Message.objects.filter(session=session, role=Role.ASSISTANT).order_by("-seq")[0]
    assert answer.content == "Tool results: You said: summarise the moon landing"
    assert run.tokens_in > child.tokens_in > 0  # the child's tokens count on the caller
    calls = spans(run.pk, "agent.call")  # asked, then read once the child had answered
    assert [c.attributes["agent.child_run"] for c in calls] == [str(child.pk)] * 2
    waits = [s.attributes.get("status") for s in spans(run.pk, "run.status")]
    assert "waiting" in waits  # it waited for the child without holding a worker


def test_it_tells_the_model_when_the_agent_cannot_be_asked(worker, dev_agent):
    AgentFactory(slug="summariser", endpoint=dev_agent.endpoint)
    caller = published(
        dev_agent, agent_tools=[{"agent": "summariser", "description": "summarises"}]
    )
    Agent.objects.filter(slug="summariser").update(published_version=None)
    session = session_create(agent=caller, external_user="erin")
    ask = 'call ask_summariser {"request": "summarise"}'
    run = wait_for_run(session_post_message(session=session, content=ask).pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert not Run.objects.filter(parent_run=run).exists()
    result = Message.objects.get(session=session, role=Role.TOOL)
    assert result.content.startswith("Error: the agent summariser is not published")


def test_a_child_run_is_admitted_against_its_agents_budgets(worker, research):
    from agentops.budgets.models import Budget, BudgetUsage

    summariser = Agent.objects.get(slug="summariser")
    Budget.objects.create(
        name="summariser-rpm",
        scope="agent",
        agent=summariser,
        metric="runs",
        period="minute",
        limit=1,
    )
    ask = 'call ask_summariser {"request": "summarise"}'
    results = []
    for user in ("erin", "frank"):
        session = session_create(agent=research, external_user=user)
        run = wait_for_run(session_post_message(session=session, content=ask).pk)
        assert run.status == RunStatus.SUCCEEDED, run.error_message
        results.append(Message.objects.get(session=session, role=Role.TOOL).content)
    assert results[0] == "You said: summarise"
    assert results[1].startswith("Error: the agent summariser cannot be asked now: budget")
    assert Run.objects.filter(agent=summariser).count() == 1
    assert BudgetUsage.objects.get().used == 1
