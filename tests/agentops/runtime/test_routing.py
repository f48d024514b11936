"""Circuit breaker, fallback tools, approvals and fencing, end to end through real workers."""

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta

import psutil
import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from agentops.models import (
    Agent,
    AgentFallback,
    Message,
    ModelEndpoint,
    Role,
    Run,
    RunStatus,
    ToolCall,
)
from agentops.runtime.breaker import breaker_reopens_in
from agentops.runtime.errors import WaitRequired
from agentops.runtime.loop import RunDriver, heartbeat_thread
from agentops.runtime.services import (
    RuntimeConflict,
    runs_reconcile,
    session_create,
    session_post_message,
    toolcall_decide,
)
from agentops.testing.processes import child_env, start_worker
from tests.agentops.runtime.helpers import (
    agent_with_python_tools,
    side_effects_forget,
    spans,
    wait_for_run,
    wait_for_side_effects,
)
from tests.factories import EndpointFactory
from tests.kit import worker_fixture
from tools.models import ToolDefinition
from tools.services import tool_save
from tracing.models import Span

pytestmark = pytest.mark.django_db(transaction=True)


# This module's worker opens a breaker on 2 failing calls from 2 conversations.
worker = worker_fixture(BREAKER_MIN_CALLS="2", BREAKER_MIN_SESSIONS="2")


@pytest.fixture
def agent(dev_agent):
    return agent_with_python_tools(dev_agent, retry_max_attempts=1)


def ask(agent, content):
    session = session_create(agent=agent, external_user="erin")
    return session, session_post_message(session=session, content=content)


def test_it_opens_the_breaker_and_sends_steps_to_the_fallback(worker, agent, devmodel, model_name):
    primary = agent.endpoint
    primary.breaker_cooldown_seconds = 600.0
    primary.save()
    AgentFallback.objects.create(
        agent=agent,
        position=1,
        endpoint=EndpointFactory(base_url=devmodel.url, default_model=model_name + "-fb"),
    )
    devmodel.script(model_name, [{"status": 500}, {"status": 500}])
    for _ in range(2):  # two conversations: the second failure opens the primary's breaker
        assert wait_for_run(ask(agent, "hi")[1].pk).status == RunStatus.SUCCEEDED
    primary.refresh_from_db()
    assert primary.breaker_state == "open"
    _, run = ask(agent, "hi")
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED and run.model_used == model_name + "-fb"
    assert len(devmodel.requests(model_name)) == 2  # the open breaker kept the primary out
    assert spans(run.pk, "fallback")[0].attributes["reason"] == "breaker_open"
    # The cooldown passes: the breaker opened as long ago as it stays open.
    ModelEndpoint.objects.filter(pk=primary.pk).update(
        breaker_opened_at=F("breaker_opened_at") - timedelta(seconds=600)
    )
    primary.refresh_from_db()
    assert breaker_reopens_in(endpoint=primary) == 0
    _, run = ask(agent, "hi")
    run = wait_for_run(run.pk)
    assert run.model_used == model_name
    assert [
        s.name for s in spans(run.pk, "breaker.half_open") + spans(run.pk, "breaker.closed")
    ] == ["breaker.half_open", "breaker.closed"]
    primary.refresh_from_db()
    assert primary.breaker_state == "closed" and primary.breaker_failures == 0


def test_it_uses_the_fallback_tool_when_a_tool_fails(worker, agent):
    broken = ToolDefinition.objects.get(name="broken_lookup")
    broken.fallback = ToolDefinition.objects.get(name="slow_lookup")
    tool_save(tool=broken)
    session, run = ask(agent, 'call broken_lookup {"label": "order-7", "seconds": 0}')
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert Message.objects.get(session=session, role=Role.TOOL).content == "found order-7"
    statuses = dict(ToolCall.objects.filter(run=run).values_list("tool_name", "status"))
    assert statuses == {"broken_lookup": "failed", "slow_lookup": "succeeded"}
    assert spans(run.pk, "fallback")[0].attributes["to_tool"] == "slow_lookup"


def test_it_times_out_a_python_tool_retries_it_then_uses_its_fallback(worker, agent):
    slow = ToolDefinition.objects.get(name="slow_lookup")
    backup = tool_save(
        tool=ToolDefinition(
            name="backup_lookup",
            description="The same lookup, with time to spare.",
            kind="python",
            python_function="slow_lookup",
            parameters=slow.parameters,
            timeout_seconds=10,
        )
    )
    slow.timeout_seconds, slow.retry_max_attempts, slow.retry_base_seconds = 0.5, 2, 0
    slow.fallback = backup
    tool_save(tool=slow)
    session, run = ask(agent, 'call slow_lookup {"label": "order-7", "seconds": 3}')
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert Message.objects.get(session=session, role=Role.TOOL).content == "found order-7"
    calls = {c.tool_name: c for c in ToolCall.objects.filter(run=run)}
    assert (calls["slow_lookup"].status, calls["slow_lookup"].error_class) == ("failed", "timeout")
    assert calls["slow_lookup"].attempts == 2 and calls["backup_lookup"].status == "succeeded"
    attempts = [
        (s.attributes["gen_ai.tool.name"], s.attributes["attempt"], s.error_class)
        for s in spans(run.pk, "tool.call")
    ]
    assert attempts == [
        ("slow_lookup", 1, "timeout"),
        ("slow_lookup", 2, "timeout"),
        ("backup_lookup", 1, ""),
    ]


@pytest.mark.parametrize("approve", [True, False])
def test_it_waits_for_approval_without_holding_a_worker(worker, agent, bob, approve):
    echo = ToolDefinition.objects.get(name="echo")
    echo.requires_approval = True
    tool_save(tool=echo)
    session, run = ask(agent, 'call echo {"text": "transfer 100 EUR"}')
    run = wait_for_run(run.pk, statuses={RunStatus.WAITING})
    assert run.wait_reason == "approval needed for echo" and run.wake_at is None
    assert not Span.objects.filter(trace_id=run.pk, status="error").exists()  # a wait, no error
    (wait,) = spans(run.pk, "run.wait")
    assert wait.attributes["wait.reason"] == "approval needed for echo"
    assert wait.attributes["wait.wake_at"] is None
    call = ToolCall.objects.get(run=run, status="awaiting_approval")
    assert call.arguments == {"text": "transfer 100 EUR"}
    toolcall_decide(tool_call=call, approve=approve, actor=bob, note="checked with finance")
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED
    tool_message = Message.objects.get(session=session, role=Role.TOOL).content
    if approve:
        assert tool_message == "transfer 100 EUR"
    else:
        assert "rejected" in tool_message and "checked with finance" in tool_message
    from agentops.models import AuditEntry

    assert AuditEntry.objects.filter(
        action="tool.approve" if approve else "tool.reject", actor=bob
    ).exists()


@contextmanager
def run_stopped_for_approval(agent: Agent) -> Iterator[tuple[RunDriver, WaitRequired]]:
    """A run driven in this process up to the moment it must wait for an operator to approve
    an echo call; the body decides that call (and waits) as its test needs."""
    from agentops.runtime.checkpoint import messages_append, run_claim

    echo = ToolDefinition.objects.get(name="echo")
    echo.requires_approval = True
    tool_save(tool=echo)
    session = session_create(agent=agent, external_user="erin")
    content = 'call echo {"text": "refund 5 EUR"}'
    (trigger,) = messages_append(
        session_id=session.pk, messages=[Message(role=Role.USER, content=content)]
    )
    run = Run.objects.create(session=session, agent=agent, trigger=trigger)
    epoch = run_claim(run_id=run.pk, worker="test")
    assert epoch is not None
    run = Run.objects.select_related("agent__endpoint", "session").get(pk=run.pk)
    beat = heartbeat_thread(run.pk, epoch)
    try:
        driver = RunDriver(run, epoch, beat)
        driver.start()
        with pytest.raises(WaitRequired) as stopped:
            driver.drive()
        yield driver, stopped.value
    finally:
        beat.stop()
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED
    assert Message.objects.get(session=session, role=Role.TOOL).content == "refund 5 EUR"


def test_it_wakes_itself_when_the_decision_came_before_it_waited(worker, agent, bob):
    """The operator decided in the moment between the call being marked for approval and
    the run writing that it waits: the decision found no waiting run to wake, so the run
    must see the decision itself, or it waits forever."""
    with run_stopped_for_approval(agent) as (driver, stopped):
        call = ToolCall.objects.get(run=driver.run, status="awaiting_approval")
        toolcall_decide(tool_call=call, approve=True, actor=bob)
        assert Run.objects.get(pk=driver.run.pk).status == RunStatus.RUNNING  # nothing to wake
        driver.wait(stopped)


@pytest.mark.parametrize("in_a_transaction", [False, True])
def test_it_wakes_when_the_decision_comes_while_it_is_about_to_wait(
    worker, agent, bob, in_a_transaction
):
    """The operator decides while the run is writing that it waits: after it read the call
    still undecided, before that write is committed. Unserialised, the decision saw a running
    run, nothing to wake (Postgres skips a locked row whose committed version misses the
    WHERE), and the run waited forever. The decision now waits for the run's row; the
    idempotent API decides inside a transaction of its own, hence both."""
    decided: list[ToolCall] = []

    def decide_elsewhere() -> None:
        try:
            call = ToolCall.objects.get(status="awaiting_approval")
            with transaction.atomic() if in_a_transaction else nullcontext():
                decided.append(toolcall_decide(tool_call=call, approve=True, actor=bob))
        finally:
            connection.close()

    elsewhere = threading.Thread(target=decide_elsewhere)

    def decide_after_the_runs_read_of_the_call(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        result = execute(sql, params, many, context)
        if elsewhere.ident is None and sql.startswith("SELECT") and '"agentops_toolcall"' in sql:
            elsewhere.start()
            elsewhere.join(timeout=2)  # unserialised, the decision is done by now
        return result

    with run_stopped_for_approval(agent) as (driver, stopped):
        with connection.execute_wrapper(decide_after_the_runs_read_of_the_call):
            driver.wait(stopped)
        elsewhere.join(timeout=30)
        assert decided and decided[0].status == "approved"


def test_it_drops_an_approval_whose_run_was_taken_over_and_hands_back_cleanly(worker, agent, bob):
    from agentops.operators.approvals.selectors import approvals_pending
    from agentops.operators.takeover.services import session_take_over
    from agentops.operators.work.services import handoff_hand_back

    echo = ToolDefinition.objects.get(name="echo")
    echo.requires_approval = True
    tool_save(tool=echo)
    session, run = ask(agent, 'call echo {"text": "transfer 100 EUR"}')
    wait_for_run(run.pk, statuses={RunStatus.WAITING})
    call = ToolCall.objects.get(run=run, status="awaiting_approval")
    assert list(approvals_pending()) == [call]

    handoff = session_take_over(session_id=session.pk, user=bob).handoff
    assert handoff is not None and Run.objects.get(pk=run.pk).status == RunStatus.HANDED_OFF
    assert list(approvals_pending()) == []  # nothing awaits the decision any more
    with pytest.raises(RuntimeConflict, match="its run has ended"):
        toolcall_decide(tool_call=call, approve=True, actor=bob)

    # The call asked for was never answered: the agent's next turn must still be a
    # conversation the model accepts (the dev model refuses unanswered calls, as OpenAI does).
    again = handoff_hand_back(handoff=handoff, user=bob)
    again = wait_for_run(again.pk)
    assert again.status == RunStatus.SUCCEEDED, again.error_message
    assert not Message.objects.filter(session=session, role=Role.TOOL).exists()  # never ran


@pytest.mark.slow
def test_it_fences_an_orphaned_job_out_after_a_takeover(agent):
    env = child_env()
    first = start_worker(env, name="first")
    rescuer = None
    try:
        side_effects_forget()
        session, run = ask(agent, "chain 1 slow_lookup 2")
        wait_for_side_effects()  # the tool has started
        run.refresh_from_db()
        job_pid = int(run.worker.rsplit(":", 1)[1])
        os.kill(job_pid, signal.SIGSTOP)  # the job process freezes mid-tool; its heartbeat stops
        assert runs_reconcile(now=timezone.now() + timedelta(seconds=60))["recovered"] == 1
        rescuer = start_worker(env, name="rescuer")
        run = wait_for_run(run.pk)
        assert run.status == RunStatus.SUCCEEDED and run.epoch == 2
        before = list(Message.objects.filter(session=session).values_list("seq", "role", "run_id"))
        os.kill(job_pid, signal.SIGCONT)  # the orphan wakes up and tries to write its step
        psutil.Process(job_pid).wait(timeout=30)  # and ends, fenced out
        after = list(Message.objects.filter(session=session).values_list("seq", "role", "run_id"))
        assert after == before
        assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED
    finally:
        first.stop()
        if rescuer:
            rescuer.stop()


@pytest.mark.parametrize("lost", ["flushed", "taken-but-never-started"])
def test_it_requeues_a_run_whose_job_redis_lost(worker, agent, lost):
    import django_rq
    from rq.job import Job, JobStatus

    from agentops.models import Message as StoredMessage
    from agentops.runtime.checkpoint import messages_append

    session = session_create(agent=agent, external_user="erin")
    (trigger,) = messages_append(
        session_id=session.pk, messages=[StoredMessage(role="user", content="hi")]
    )
    job_id = f"run-lost-{lost}"
    if lost == "taken-but-never-started":
        job = Job.create(
            "agentops.jobs.run_job",
            args=["x"],
            id=job_id,
            connection=django_rq.get_connection("runs"),
            origin="runs",
        )
        job.set_status(JobStatus.QUEUED)
        job.save()
    run = Run.objects.create(
        session=session,
        agent=agent,
        trigger=trigger,
        job_id=job_id,
        enqueued_at=timezone.now() - timedelta(minutes=5),
    )
    assert runs_reconcile()["requeued"] == 1
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED and run.job_id != job_id
