"""Redis is only a queue: when it is killed and started again, every process waits for it and
carries on, and every run finishes once, with no help from outside."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request

import django_rq
import pytest
from rq import Worker

from agentops import embedded
from agentops.auth import api_key_create
from agentops.health import live_scheduler_names, live_worker_names
from agentops.models import Run
from agentops.runtime.services import session_create
from agentops.testing.chaos import ChaosReport, verify
from agentops.testing.processes import (
    CONCURRENT_WORKER,
    FORKING_WORKER,
    child_env,
    free_port,
    start_scheduler,
    start_web,
    start_worker,
)
from tests.agentops.runtime.helpers import (
    runs_post,
    side_effects_forget,
    wait_for_side_effects,
    wait_for_success,
)
from tests.kit import until

pytestmark = pytest.mark.django_db(transaction=True)


def kill_redis() -> None:
    pid = int((embedded.redis_dir() / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    until(lambda: not embedded.redis_answers(embedded.redis_socket()), seconds=10)


def post_message(base: str, key: str, session_id: str, content: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base}/api/sessions/{session_id}/messages",
        data=json.dumps({"content": content}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"body": exc.read().decode(errors="replace")}


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("worker_class", [FORKING_WORKER, CONCURRENT_WORKER])
def test_it_finishes_every_run_when_redis_is_killed_and_restarted(tooled_agent, bob, worker_class):
    side_effects_forget()
    env = child_env(RUN_STALE_SECONDS="4", RUN_LOST_JOB_SECONDS="3")
    port = free_port()
    procs = [
        start_scheduler(env),
        start_worker(env, name="outage-a", worker_class=worker_class),
        start_worker(env, name="outage-b", worker_class=worker_class),
        start_web(env, port),
    ]
    key = api_key_create(user=bob, name="outage")[1]
    waiting = session_create(agent=tooled_agent, external_user="during-outage")
    # Non-idempotent: a repeat would show in the side-effect log.
    run_ids = runs_post(tooled_agent, "chain 3 side_effect 0.4", 6)
    try:
        wait_for_side_effects(2)
        kill_redis()
        status, body = post_message(f"http://127.0.0.1:{port}", key, str(waiting.pk), "hello")
        assert status == 202, body  # accepted while Redis is away; enqueued when it is back
        run_ids.append(body["run"])
        time.sleep(2)  # on purpose: the outage lasts, and the processes live through it
        embedded.start_redis()
        wait_for_success(run_ids)
        assert [proc.name for proc in procs if not proc.alive()] == []
    finally:
        for proc in procs:
            proc.stop()
    report = ChaosReport()
    verify(run_ids, report)
    assert report.problems == []
    assert report.duplicate_side_effects == 0
    assert Run.objects.get(pk=run_ids[-1]).jobs_started == 1


def test_it_reports_only_processes_with_a_recent_heartbeat():
    redis = django_rq.get_connection("runs")
    env = child_env()
    scheduler, worker = start_scheduler(env), start_worker(env, name="health")
    try:

        def health_workers() -> list[str]:
            return [n for n in live_worker_names(redis=redis) if n.startswith("health-")]

        until(lambda: health_workers() and live_scheduler_names(redis=redis), seconds=60)
        workers = health_workers()
        assert len(workers) == 1
        schedulers_before = set(live_scheduler_names(redis=redis))
        scheduler.kill_group()
        worker.kill_group()
        until(
            lambda: (
                workers[0] not in live_worker_names(redis=redis)
                and not schedulers_before & set(live_scheduler_names(redis=redis))
            ),
            seconds=90,
            every=0.2,
        )
        assert workers[0] not in live_worker_names(redis=redis)
        assert not schedulers_before & set(live_scheduler_names(redis=redis))
        # RQ still lists the killed worker: only its heartbeat says it is gone.
        assert workers[0] in [w.name for w in Worker.all(connection=redis)]
    finally:
        scheduler.stop()
        worker.stop()
