"""Agents as tools on real runs: real worker processes (one killed with SIGKILL), the real
openai client, the dev model over HTTP."""

import itertools

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


def ask(agent: str, request: str) -> str:
    """What makes the dev model ask `agent` (as a tool) for `request`."""
    import json

    return f"call ask_{agent} " + json.dumps({"request": request})


def agents_chain(dev_agent, slugs: list[str]) -> list[Agent]:
    """Agents that can each ask the next (the last asks none), published, first first."""
    agents = [
        AgentFactory(slug=slug, name=slug.title(), endpoint=dev_agent.endpoint) for slug in slugs
    ]
    for agent, callee in zip(agents, [*agents[1:], None], strict=True):
        tools = [{"agent": callee.slug, "description": f"asks {callee.slug}"}] if callee else []
        published(agent, agent_tools=tools)
    return agents


def wait_for_status(run_id: object, status: str) -> Run:
    return wait_for_run(run_id, statuses={status})


@pytest.mark.parametrize("end", ["cancel", "take over"])
def test_a_caller_that_ends_cancels_its_children_down_the_chain(worker, dev_agent, bob, end):
    """The caller waits for its child, which waits for its own child, which waits for an
    operator's approval: cancelling the caller (or an operator taking its conversation over)
    cancels both, nothing is left going, and the caller stays as it ended."""
    from agentops.models import ACTIVE_RUN_STATUSES, ToolCall
    from agentops.operators.takeover.services import session_take_over
    from agentops.runtime.agent_calls import parents_reconcile
    from agentops.runtime.services import run_cancel
    from tests.kit import until
    from tools.models import ToolDefinition
    from tools.services import tool_save

    caller_agent, middle_agent, last_agent = agents_chain(dev_agent, ["caller", "middle", "last"])
    echo = ToolDefinition.objects.get(name="echo")
    echo.requires_approval = True
    tool_save(tool=echo)
    session = session_create(agent=caller_agent, external_user="erin")
    message = ask("middle", ask("last", 'call echo {"text": "refund 5 EUR"}'))
    caller = session_post_message(session=session, content=message)
    last = until(
        lambda: Run.objects.filter(agent=last_agent, status=RunStatus.WAITING).first(),
        message="the last agent never waited for its approval",
    )
    middle = wait_for_status(last.parent_run_id, RunStatus.WAITING)
    caller = wait_for_status(caller.pk, RunStatus.WAITING)
    assert middle.parent_run_id == caller.pk and middle.agent == middle_agent
    if end == "cancel":
        run_cancel(run=caller, actor=bob)
        ended, why = RunStatus.CANCELLED, "its caller was cancelled"
    else:
        session_take_over(session_id=session.pk, user=bob)
        ended, why = RunStatus.HANDED_OFF, "its caller was handed off"
    middle.refresh_from_db()
    last.refresh_from_db()
    assert (middle.status, middle.wait_reason) == (RunStatus.CANCELLED, why)
    assert (last.status, last.wait_reason) == (RunStatus.CANCELLED, "its caller was cancelled")
    assert not Run.objects.filter(status__in=ACTIVE_RUN_STATUSES).exists()
    assert ToolCall.objects.get(run=last).status == "awaiting_approval"  # never run
    assert parents_reconcile() == 0  # the sweep wakes nobody: the caller is not waiting
    caller.refresh_from_db()
    assert caller.status == ended


def test_a_child_that_ends_after_its_caller_was_cancelled_does_not_wake_it(research):
    """A child that ends on its own after its caller was cancelled (its worker finishing a
    step before it read the cancel, say): the caller is neither woken nor resumed, by the
    child's end or by the sweep. (Before the module's worker: nothing is to run these runs.)"""
    from agentops.runtime.agent_calls import parent_wake, parents_reconcile
    from tests.factories import SessionFactory

    summariser = Agent.objects.get(slug="summariser")
    caller = Run.objects.create(
        session=SessionFactory(agent=research), agent=research, status=RunStatus.CANCELLED
    )
    child = Run.objects.create(
        session=SessionFactory(agent=summariser),
        agent=summariser,
        parent_run=caller,
        parent_call_id="1:call_0",
        status=RunStatus.SUCCEEDED,
    )
    Run.objects.filter(pk=caller.pk).update(state={"child": str(child.pk)})
    parent_wake(run_id=child.pk)
    assert parents_reconcile() == 0
    assert Run.objects.get(pk=caller.pk).status == RunStatus.CANCELLED


def test_a_child_still_going_when_its_caller_ended_is_cancelled_by_the_sweep(research):
    """The cascade lost (the process died between the caller's end and its children's
    cancel): the scheduler's sweep cancels the orphan."""
    from agentops.runtime.agent_calls import parents_reconcile
    from tests.factories import SessionFactory

    summariser = Agent.objects.get(slug="summariser")
    caller = Run.objects.create(
        session=SessionFactory(agent=research), agent=research, status=RunStatus.FAILED
    )
    child = Run.objects.create(
        session=SessionFactory(agent=summariser),
        agent=summariser,
        parent_run=caller,
        parent_call_id="1:call_0",
        status=RunStatus.WAITING,
    )
    parents_reconcile()
    child.refresh_from_db()
    assert (child.status, child.wait_reason) == (RunStatus.CANCELLED, "its caller failed")


def own_tokens(run: Run) -> tuple[int, int]:
    """The tokens of the run's own model calls (from its trace)."""
    from tracing import semconv

    calls = spans(run.pk, semconv.MODEL_CALL)
    return (
        sum(int(c.attributes.get(semconv.INPUT_TOKENS) or 0) for c in calls),
        sum(int(c.attributes.get(semconv.OUTPUT_TOKENS) or 0) for c in calls),
    )


def test_agents_call_agents_at_most_three_deep_and_tokens_roll_up(worker, dev_agent):
    """first → second → third → fourth is three deep: fourth asking fifth is a tool error
    naming the limit, no fifth run exists, and each run's tokens are its own plus those of
    the child it asked (so the first's count its grandchildren's too)."""
    slugs = ["first", "second", "third", "fourth", "fifth"]
    agents = agents_chain(dev_agent, slugs)
    message = ask("second", ask("third", ask("fourth", ask("fifth", "say hello"))))
    session = session_create(agent=agents[0], external_user="erin")
    first = wait_for_run(session_post_message(session=session, content=message).pk, timeout=120)
    assert first.status == RunStatus.SUCCEEDED, first.error_message
    runs = [first]
    for agent in agents[1:4]:
        (child,) = Run.objects.filter(parent_run=runs[-1])
        assert child.agent == agent and child.status == RunStatus.SUCCEEDED
        runs.append(child)
    assert not Run.objects.filter(agent=agents[4]).exists()
    assert Run.objects.filter(parent_run__isnull=False).count() == 3
    refused = Message.objects.get(session=runs[3].session, role=Role.TOOL).content
    assert refused.startswith("Error: agents call agents at most 3 deep.")
    for caller, child in itertools.pairwise(runs):
        tokens_in, tokens_out = own_tokens(caller)
        assert (caller.tokens_in, caller.tokens_out) == (
            tokens_in + child.tokens_in,
            tokens_out + child.tokens_out,
        )
    assert (runs[3].tokens_in, runs[3].tokens_out) == own_tokens(runs[3]) != (0, 0)
    from agentops.runtime.agent_calls import runs_below

    assert set(runs_below(run_id=first.pk)) == {r.pk for r in runs[1:]}  # whose cost is the first's
    assert runs_below(run_id=runs[3].pk) == []


def test_a_run_asks_other_agents_at_most_five_times(worker, research):
    requests = [f"summarise part {n}" for n in range(1, 7)]
    session = session_create(agent=research, external_user="erin")
    script = "\n".join(ask("summariser", r) for r in requests)
    run = wait_for_run(session_post_message(session=session, content=script).pk, timeout=120)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    children = Run.objects.filter(parent_run=run)
    assert children.count() == 5
    assert sorted(c.trigger.content for c in children) == sorted(requests[:5])
    results = list(
        Message.objects.filter(session=session, role=Role.TOOL)
        .order_by("seq")
        .values_list("content", flat=True)
    )
    assert results[:5] == [f"You said: {r}" for r in requests[:5]]
    assert results[5] == (
        "Error: this run asked other agents 5 times already. Go on with what you have."
    )


def test_a_child_that_needs_a_human_tells_its_caller_and_queues_no_handoff(worker, research):
    """A child asks for a human: its caller's model reads that as a tool error, and decides
    (here it answers); nothing waits in an operator's queue for a conversation nobody sees."""
    from agentops.models import Handoff

    session = session_create(agent=research, external_user="erin")
    run = wait_for_run(
        session_post_message(
            session=session, content=ask("summariser", "handoff the refund is too large")
        ).pk
    )
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    (child,) = Run.objects.filter(parent_run=run)
    assert child.status == RunStatus.HANDED_OFF
    assert not Handoff.objects.exists()
    result = Message.objects.get(session=session, role=Role.TOOL).content
    assert result.startswith("Error: the summariser agent needs a human: ")
    assert "the refund is too large" in result
    (handoff,) = spans(child.pk, "handoff")
    assert handoff.attributes["to_caller"] is True


def test_a_child_running_when_its_caller_is_cancelled_stops_at_its_next_write(worker, research):
    """The child is in the middle of a slow tool when its caller is cancelled: it is
    cancelled at once, its job stops at its next write (the tool's result is never stored),
    and neither run goes on."""
    import django_rq
    from django.conf import settings

    from agentops.models import ACTIVE_RUN_STATUSES
    from agentops.runtime.services import run_cancel
    from tests.agentops.runtime.helpers import side_effects_forget, wait_for_side_effects
    from tests.kit import until

    side_effects_forget()
    session = session_create(agent=research, external_user="erin")
    caller = session_post_message(
        session=session, content=ask("summariser", "chain 1 slow_lookup 2")
    )
    wait_for_side_effects(1)  # the child's tool is running
    (child,) = Run.objects.filter(parent_run=caller)
    assert child.status == RunStatus.RUNNING
    run_cancel(run=caller)
    child.refresh_from_db()
    assert (child.status, child.wait_reason) == (RunStatus.CANCELLED, "its caller was cancelled")
    job = django_rq.get_queue(settings.RUN_QUEUE).fetch_job(child.job_id)
    assert job is not None
    until(
        lambda: job.get_status(refresh=True) in ("finished", "failed"),
        message="the child's job never stopped",
    )
    assert not Message.objects.filter(session=child.session, role=Role.TOOL).exists()
    assert not Run.objects.filter(status__in=ACTIVE_RUN_STATUSES).exists()
    assert Run.objects.get(pk=caller.pk).status == RunStatus.CANCELLED


def test_a_caller_that_fails_cancels_the_child_it_started(research):
    """A caller that fails (here: over its job's time limit) with a child still going: the
    child is cancelled, saying why."""
    from agentops.runtime.checkpoint import run_time_out
    from tests.factories import SessionFactory

    summariser = Agent.objects.get(slug="summariser")
    caller = Run.objects.create(
        session=SessionFactory(agent=research), agent=research, status=RunStatus.RUNNING, epoch=1
    )
    child = Run.objects.create(
        session=SessionFactory(agent=summariser),
        agent=summariser,
        parent_run=caller,
        parent_call_id="1:call_0",
        status=RunStatus.WAITING,
    )
    assert run_time_out(run_id=caller.pk, epoch=1, seconds=5)
    child.refresh_from_db()
    assert (child.status, child.wait_reason) == (RunStatus.CANCELLED, "its caller failed")


def test_a_cancelled_caller_retried_resumes_the_child_its_cancel_stopped(worker, research):
    """Cancelled mid-way (its child with it), then retried: the child is retried from its
    checkpoint too, and the caller answers with its answer, not with its cancel."""
    import django_rq
    from django.conf import settings

    from agentops.runtime.services import run_cancel, run_retry
    from tests.agentops.runtime.helpers import side_effects_forget, wait_for_side_effects
    from tests.kit import until

    side_effects_forget()
    session = session_create(agent=research, external_user="erin")
    caller = session_post_message(
        session=session, content=ask("summariser", "chain 1 slow_lookup 1")
    )
    wait_for_side_effects(1)
    (child,) = Run.objects.filter(parent_run=caller)
    run_cancel(run=caller)
    child.refresh_from_db()
    job = django_rq.get_queue(settings.RUN_QUEUE).fetch_job(child.job_id)
    assert job is not None
    until(
        lambda: job.get_status(refresh=True) in ("finished", "failed"),
        message="the child's job never stopped",
    )
    run_retry(run=Run.objects.get(pk=caller.pk))
    caller = wait_for_run(caller.pk)
    assert caller.status == RunStatus.SUCCEEDED, caller.error_message
    (child,) = Run.objects.filter(parent_run=caller)
    assert (child.status, child.wait_reason) == (RunStatus.SUCCEEDED, "")
    assert Message.objects.get(session=session, role=Role.TOOL).content == "Chain of 1 done."


def test_what_the_agents_it_asked_cost_counts_on_the_caller(worker, research, admin_client):
    """The caller's cost (what its per-run cost limit weighs, and the run page's total of the
    agents it asked) includes its children's model calls, as its tokens do."""
    import threading
    from decimal import Decimal
    from types import SimpleNamespace

    from agentops.runtime.loop import RunDriver
    from tracing.models import ModelPrice

    ModelPrice.objects.create(
        model=research.endpoint.default_model, input_per_million=1000, output_per_million=1000
    )  # a thousandth of a dollar a token
    session = session_create(agent=research, external_user="erin")
    ask_it = 'call ask_summariser {"request": "summarise the moon landing"}'
    run = wait_for_run(session_post_message(session=session, content=ask_it).pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    (child,) = Run.objects.filter(parent_run=run)
    own, asked = sum(own_tokens(run)), sum(own_tokens(child))
    assert own and asked
    run = Run.objects.select_related("agent__endpoint", "session", "agent_version").get(pk=run.pk)
    beat = SimpleNamespace(lost=threading.Event(), stop=lambda: None)
    assert RunDriver(run, run.epoch, beat).cost_so_far() == Decimal(own + asked) / 1000
    page = admin_client.get(f"/runs/{run.pk}/").content.decode()
    assert "Agents it asked" in page
    cost = Decimal(asked) / 1000
    assert (f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}") in page
