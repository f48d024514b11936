"""The concurrent worker: many runs at once in one process, each in a thread.

Its runs go through a queue of their own, so that the session's forking worker (the
`worker` fixture, alive once any test used it) takes none of them; runs the scheduler
recovers go back to the usual queue."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import django_rq
import pytest
from django.conf import settings
from django.utils import timezone
from rq import Queue
from rq.job import Job, JobStatus

from agentops.models import Message, Role, Run, RunStatus
from agentops.runtime.checkpoint import messages_append
from agentops.runtime.services import run_cancel, session_create
from agentops.testing.chaos import ChaosReport, verify
from agentops.testing.processes import (
    CONCURRENT_WORKER,
    Proc,
    child_env,
    postgres_end_backends,
    postgres_full,
    start_scheduler,
    start_worker,
)
from agentops.testing.tools import side_effects_log
from tests.agentops.runtime.helpers import (
    side_effects_forget,
    wait_for_run,
    wait_for_side_effects,
)
from tests.kit import until

pytestmark = pytest.mark.django_db(transaction=True)


QUEUE = "tests"  # configured by agentops.testing.settings, as in the suite


def _start(env: dict[str, str], name: str = "concurrent") -> Proc:
    return start_worker(env, name=name, worker_class=CONCURRENT_WORKER, queues=(QUEUE,))


@pytest.fixture
def concurrent_worker() -> Iterator[Proc]:
    proc = _start(child_env(WORKER_CONCURRENCY="25"))
    yield proc
    proc.stop()


def _queue() -> Queue:
    return Queue(QUEUE, connection=django_rq.get_connection("runs"))


def _enqueue(run: Run) -> Job:
    return _queue().enqueue(
        "agentops.jobs.run_job",
        str(run.pk),
        job_id=run.job_id,
        job_timeout=settings.RUN_JOB_TIMEOUT,
    )


def _post(agent, count: int, content: str, *, enqueue: bool = True) -> list[Run]:
    """What session_post_message does, with the job on this file's queue."""
    runs = []
    for i in range(count):
        session = session_create(agent=agent, external_user=f"user-{i}")
        (trigger,) = messages_append(
            session_id=session.pk, messages=[Message(role=Role.USER, content=content)]
        )
        run = Run.objects.create(
            session=session, agent=agent, trigger=trigger, enqueued_at=timezone.now()
        )
        run.job_id = f"run-{run.pk}-{time.time_ns()}"
        Run.objects.filter(pk=run.pk).update(job_id=run.job_id)
        if enqueue:
            _enqueue(run)
        runs.append(run)
    return runs


def test_it_drives_many_runs_at_once_in_one_process(
    concurrent_worker, tooled_agent, devmodel, model_name
):
    devmodel.script(model_name, latency=2)
    runs = _post(tooled_agent, 10, "hello")
    runs = [wait_for_run(run.pk) for run in runs]
    assert {run.status for run in runs} == {RunStatus.SUCCEEDED}
    assert {run.worker for run in runs} == {runs[0].worker}  # one process drove them all
    assert runs[0].worker.endswith(f":{concurrent_worker.pid}")
    requests = devmodel.requests(model_name)
    assert len(requests) == 10
    # Every model call started before any ended: the ten runs waited on the model together.
    assert max(r["at"] for r in requests) < min(r["ended"] for r in requests)


def test_it_outlives_a_job_that_crashes(concurrent_worker, tooled_agent):
    queue = _queue()
    job = queue.enqueue("agentops.jobs.run_job", "not-a-run-id")
    (run,) = _post(tooled_agent, 1, "hello after the crash")
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    assert Job.fetch(job.id, connection=queue.connection).get_status() == JobStatus.FAILED
    assert concurrent_worker.alive()


@pytest.mark.slow
def test_it_survives_a_postgres_that_refuses_it_and_runs_the_job_later(tooled_agent, worker):
    # A short pool timeout: the job fails after a few waits for a connection, not 3 x 10 s.
    concurrent_worker = _start(child_env(WORKER_CONCURRENCY="25", DB_POOL_TIMEOUT="2"))
    try:
        # The scheduler re-enqueues on the "runs" queue, which the session's worker serves.
        (run,) = _post(tooled_agent, 1, "hello", enqueue=False)
        postgres_end_backends()  # the pool's connections are gone
        with postgres_full():
            job = _enqueue(run)
            # The worker took the job and could not get a connection (or died: asserted below).
            until(
                lambda: (
                    not concurrent_worker.alive()
                    or job.get_status(refresh=True) == JobStatus.FAILED
                ),
                seconds=40,
            )
            assert job.get_status() == JobStatus.FAILED
        assert concurrent_worker.alive(), concurrent_worker.output()[-2000:]
        scheduler = start_scheduler(child_env(RUN_LOST_JOB_SECONDS="2"))
        try:
            assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED  # re-enqueued, then run
        finally:
            scheduler.stop()
    finally:
        concurrent_worker.stop()


@pytest.mark.slow
def test_it_stops_a_cancelled_run_at_its_next_write(concurrent_worker, tooled_agent):
    side_effects_forget()
    (run,) = _post(tooled_agent, 1, 'call slow_lookup {"label": "c", "seconds": 3}')
    wait_for_side_effects(1)  # the run's thread is inside the tool
    run_cancel(run=run)
    time.sleep(5)  # on purpose: the tool ends (after 3 s); its result must not be written
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert not Message.objects.filter(session_id=run.session_id, role=Role.TOOL).exists()


@pytest.mark.slow
def test_it_fails_a_run_that_goes_over_its_time_limit(tooled_agent, settings):
    side_effects_forget()
    settings.RUN_JOB_TIMEOUT = 4  # the job's limit is set where it is enqueued
    proc = _start(child_env(WORKER_CONCURRENCY="4"))
    try:
        (slow,) = _post(tooled_agent, 1, 'call slow_lookup {"label": "t", "seconds": 7}')
        wait_for_side_effects(1)
        tool_returns_at = time.monotonic() + 7
        slow = wait_for_run(slow.pk, timeout=40)
        assert slow.status == RunStatus.FAILED
        assert slow.error_class == "timeout"
        assert "time limit of 4 s (RUN_JOB_TIMEOUT)" in slow.error_message
        # The stuck thread holds one slot, not the process: another run goes through.
        (quick,) = _post(tooled_agent, 1, "hello")
        assert wait_for_run(quick.pk).status == RunStatus.SUCCEEDED
        # On purpose: past the tool's return, its result must not be written.
        time.sleep(max(0.0, tool_returns_at - time.monotonic()) + 2)
        slow.refresh_from_db()
        assert slow.status == RunStatus.FAILED
        assert not Message.objects.filter(session_id=slow.session_id, role=Role.TOOL).exists()
    finally:
        proc.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_it_resumes_all_twenty_runs_of_a_killed_worker_elsewhere(
    tooled_agent, devmodel, model_name
):
    side_effects_forget()
    devmodel.script(model_name, latency=0.5)
    env = child_env(WORKER_CONCURRENCY="25", RUN_STALE_SECONDS="4", RUN_LOST_JOB_SECONDS="5")
    victim = _start(env, name="victim")
    runs = _post(tooled_agent, 10, "chain 3 side_effect 1.5") + _post(
        tooled_agent, 10, "chain 3 slow_lookup 1.5"
    )
    ids = [run.pk for run in runs]
    try:
        in_flight = Run.objects.filter(
            pk__in=ids, status=RunStatus.RUNNING, worker__endswith=f":{victim.pid}", step__gt=0
        )
        until(
            lambda: in_flight.count() == 20,
            seconds=60,
            message=lambda: f"only {in_flight.count()} of 20 runs were in flight",
        )
        os.kill(victim.pid, signal.SIGKILL)
        victim.popen.wait(10)
    finally:
        victim.stop()
    epochs = dict(Run.objects.filter(pk__in=ids).values_list("pk", "epoch"))
    # The scheduler re-enqueues on the usual queue (where the session's worker may take some).
    rescuer = start_worker(env, name="rescuer", worker_class=CONCURRENT_WORKER)
    scheduler = start_scheduler(env)
    try:
        finished = [wait_for_run(pk, timeout=120) for pk in ids]
    finally:
        scheduler.stop()
        rescuer.stop()
    assert all(run.epoch > epochs[run.pk] for run in finished)  # every one was taken over
    assert not any(run.worker.endswith(f":{victim.pid}") for run in finished)
    report = ChaosReport()
    verify(ids, report)
    assert report.problems == []
    assert report.duplicate_side_effects == 0
    assert report.repeated_completed_calls == 0
    assert set(report.runs) <= {"succeeded", "handed_off"}
    assert set(report.handoff_reasons) <= {"tool outcome unknown"}
    keys = [json.loads(line)["key"] for line in side_effects_log().read_text().splitlines()]
    assert len(keys) >= 20
