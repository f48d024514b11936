"""Crash recovery with real worker processes killed with SIGKILL at different steps."""

import pytest

from agentops.testing.chaos import KILL_MODES, THREADED_KILL_MODES, chaos_run
from agentops.testing.processes import CONCURRENT_WORKER, FORKING_WORKER, child_env
from tests.agentops.runtime.helpers import (
    runs_post,
    side_effects_forget,
    wait_for_side_effects,
    wait_for_success,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("worker_class", "modes"),
    [(FORKING_WORKER, KILL_MODES), (CONCURRENT_WORKER, THREADED_KILL_MODES)],
)
@pytest.mark.slow
def test_it_survives_a_dozen_kills_without_losing_or_repeating_work(
    tooled_agent, worker_class, modes
):
    # Every kill mode several times; `make chaos` (bench/chaos.py) makes 200 kills.
    env = child_env(RUN_STALE_SECONDS="4", RUN_LOST_JOB_SECONDS="5")
    report = chaos_run(
        agent=tooled_agent,
        env=env,
        kills=12,
        workers=3,
        steps=4,
        timeout=240,
        worker_class=worker_class,
    )
    figures = report.figures()
    print(figures)
    assert figures["kills"] >= 12
    assert set(report.kills) == set(modes)
    assert figures["problems"] == []
    assert figures["non_idempotent_executed_twice"] == 0
    assert figures["completed_calls_executed_again"] == 0
    assert figures["recoveries_measured"] > 0
    assert set(figures["runs"]) <= {"succeeded", "handed_off"}
    assert set(figures["handoff_reasons"]) <= {"tool outcome unknown"}
    # Calls of tools that honour an idempotency key are sent again, never handed off, and
    # their services made each change once.
    assert figures["keyed_calls_resent"] > 0
    assert figures["keyed_calls_handed_off"] == 0
    assert figures["keyed_duplicated_effects"] == 0 and figures["keyed_effects"] > 0


@pytest.mark.parametrize(
    ("tool", "expected_status", "executions"),
    [("side_effect", "handed_off", 1), ("slow_lookup", "succeeded", 2)],
)
@pytest.mark.slow
def test_it_never_repeats_a_non_idempotent_call_that_was_in_flight(
    tooled_agent, tool, expected_status, executions
):
    from agentops.models import Handoff, ToolCall
    from agentops.runtime.services import runs_reconcile, session_create, session_post_message
    from agentops.testing.chaos import kill
    from agentops.testing.processes import start_worker
    from agentops.testing.tools import side_effects_log
    from tests.agentops.runtime.helpers import wait_for_run

    side_effects_forget()
    env = child_env()
    victim = start_worker(env, name="victim")
    try:
        session = session_create(agent=tooled_agent, external_user="erin")
        run = session_post_message(session=session, content=f"chain 1 {tool} 3")
        wait_for_side_effects(1)
        assert kill(victim, "horse") is not None
    finally:
        victim.stop()
    rescuer = start_worker(env, name="rescuer")
    try:
        from django.utils import timezone

        from agentops.models import Run

        run.refresh_from_db()
        assert run.status == "running"
        assert (
            runs_reconcile(now=run.heartbeat_at + timezone.timedelta(seconds=30))["recovered"] == 1
        )
        run = wait_for_run(run.pk)
    finally:
        rescuer.stop()
    assert run.status == expected_status
    assert len(side_effects_log().read_text().splitlines()) == executions
    call = ToolCall.objects.get(run=run)
    if tool == "side_effect":
        assert call.status == "unknown"
        assert Handoff.objects.get(run=run).reason.startswith("tool outcome unknown")
    else:
        # An idempotent call is recorded with its step: the crashed attempt left no row, the rerun did.
        assert call.status == "succeeded" and call.attempts == 1
    assert Run.objects.get(pk=run.pk).epoch == 2


@pytest.mark.slow
def test_it_resumes_runs_after_postgres_and_redis_restart(tooled_agent):
    from django.db import connections

    from agentops import embedded
    from agentops.models import Run
    from agentops.testing.chaos import ChaosReport, verify
    from agentops.testing.processes import start_scheduler, start_worker

    side_effects_forget()
    env = child_env(RUN_STALE_SECONDS="4", RUN_LOST_JOB_SECONDS="3")
    procs = [start_scheduler(env), start_worker(env, name="a"), start_worker(env, name="b")]
    run_ids = runs_post(tooled_agent, "chain 3 slow_lookup 0.5", 4)
    try:
        wait_for_side_effects(2)
        assert embedded.stop_redis()
        embedded.start_redis()
        assert embedded.stop_postgres()
        embedded.start_postgres()
        connections.close_all()
        for proc in procs:
            proc.stop(timeout=3)
            if proc.alive():
                proc.kill_group()
        procs = [start_scheduler(env), start_worker(env, name="a2"), start_worker(env, name="b2")]
        wait_for_success(run_ids)
    finally:
        for proc in procs:
            proc.stop()
    report = ChaosReport()
    verify(run_ids, report)
    assert report.problems == []
    assert Run.objects.filter(pk__in=run_ids, jobs_started__gt=1).exists()


@pytest.mark.slow
def test_it_never_repeats_a_call_already_found_in_doubt(tooled_agent, worker):
    """A resume that marked a call 'unknown' and then died itself must not run it on the next."""
    from agentops.models import Message, Run, ToolCall
    from agentops.runtime.checkpoint import messages_append
    from agentops.runtime.services import run_enqueue, session_create
    from agentops.testing.tools import side_effects_log
    from tests.agentops.runtime.helpers import wait_for_run

    side_effects_forget()
    session = session_create(agent=tooled_agent, external_user="erin")
    (trigger,) = messages_append(
        session_id=session.pk, messages=[Message(role="user", content="chain 1 side_effect 0")]
    )
    call = {
        "id": "call_x",
        "type": "function",
        "function": {"name": "side_effect", "arguments": '{"label": "1", "seconds": 0}'},
    }
    # Two jobs ran before: one died with the call in flight, the resume that found it so died too.
    run = Run.objects.create(
        session=session, agent=tooled_agent, trigger=trigger, step=1, jobs_started=2
    )
    messages_append(
        session_id=session.pk,
        messages=[Message(role="assistant", tool_calls=[call], run=run, step=1)],
    )
    ToolCall.objects.create(
        run=run,
        step=2,
        call_id="call_x",
        tool_name="side_effect",
        idempotent=False,
        status="unknown",
        arguments={"label": "1", "seconds": 0},
    )
    run_enqueue(run=run)
    run = wait_for_run(run.pk)
    assert run.status == "handed_off" and run.wait_reason.startswith("tool outcome unknown")
    assert not side_effects_log().exists()
