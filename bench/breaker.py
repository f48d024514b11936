"""One poisoned conversation beside healthy ones: do the healthy ones keep their latency?
Prints JSON.

Two scenarios on fresh endpoints of the development model server (a fixed model latency),
one concurrent worker process and the scheduler:
- alone: N conversations say "Hi", one every 0.1 s;
- poisoned: the same, while one conversation whose request fails every time (the dev model's
  `[[fault:500]]`) is retried to exhaustion (8 attempts, backoff 0.2-1 s) beside them.
Reported per scenario: time to done (run created -> finished) p50, p95, max of the healthy
runs, their statuses, the poisoned run's status and attempts, and the endpoint's breaker
state and transitions. Before issue 21 item 1 the poisoned run opened the breaker and every
healthy run waited out its 30 s cooldown.

Usage: `python bench/breaker.py [--conversations N] [--latency SECONDS]` (own data folder var/bench).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

from _setup import devmodel_script, devmodel_start, django_setup, percentile

POISON = "[[fault:500]] where is my order?"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.2, help="model latency, seconds")
    args = parser.parse_args()
    django_setup()
    import django_rq
    from rq import Worker as RQWorker

    from agentops.models import FINISHED_RUN_STATUSES, BreakerTransition, Run
    from agentops.runtime.services import session_create, session_post_message
    from agentops.testing.processes import child_env, start_scheduler, start_worker
    from tests.factories import AgentFactory, EndpointFactory

    devmodel, devmodel_base = devmodel_start()

    def wait_listening(name: str) -> None:
        """Until the worker listens, so no healthy run's time includes a worker starting."""
        connection = django_rq.get_connection("runs")
        deadline = time.monotonic() + 60
        while name not in {w.name for w in RQWorker.all(connection=connection)}:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not start")
            time.sleep(0.1)

    def scenario(*, poisoned: bool) -> dict[str, Any]:
        model = f"bench-breaker-{uuid.uuid4().hex[:8]}"
        devmodel_script(devmodel_base, {"model": model, "latency": args.latency})
        endpoint = EndpointFactory(name=model, base_url=f"{devmodel_base}/v1", default_model=model)
        agent = AgentFactory(
            slug=model,
            endpoint=endpoint,
            memory_enabled=False,
            retry_max_attempts=8,
            retry_base_seconds=0.2,
            retry_cap_seconds=1.0,
        )
        env = child_env(LOG_LEVEL="ERROR")
        worker = start_worker(
            env, name="bench-breaker", worker_class="agentops.worker.ConcurrentWorker"
        )
        procs = [worker, start_scheduler(env)]
        try:
            wait_listening(worker.popen.args[worker.popen.args.index("--name") + 1])
            poisoned_id = None
            if poisoned:
                session = session_create(agent=agent, external_user="poisoned")
                poisoned_id = session_post_message(session=session, content=POISON).pk
            healthy = []
            for i in range(args.conversations):
                session = session_create(agent=agent, external_user=f"healthy-{i}")
                healthy.append(session_post_message(session=session, content="Hi").pk)
                time.sleep(0.1)
            every = healthy + ([poisoned_id] if poisoned_id else [])
            deadline = time.monotonic() + 300
            while (
                Run.objects.filter(pk__in=every).exclude(status__in=FINISHED_RUN_STATUSES).exists()
                and time.monotonic() < deadline
            ):
                time.sleep(0.1)
        finally:
            for proc in procs:
                proc.stop(timeout=30)
        runs = list(Run.objects.filter(pk__in=healthy))
        done = [(r.finished_at - r.created_at).total_seconds() for r in runs if r.finished_at]
        statuses: dict[str, int] = {}
        for run in runs:
            statuses[run.status] = statuses.get(run.status, 0) + 1
        endpoint.refresh_from_db()
        result: dict[str, Any] = {
            "healthy_conversations": len(runs),
            "healthy_statuses": statuses,
            "healthy_time_to_done_s": {
                "p50": round(percentile(done, 50), 3),
                "p95": round(percentile(done, 95), 3),
                "max": round(max(done), 3) if done else None,
            },
            "breaker_state": endpoint.breaker_state,
            "breaker_transitions": list(
                BreakerTransition.objects.filter(endpoint=endpoint).values_list("state", flat=True)
            ),
        }
        if poisoned_id:
            run = Run.objects.get(pk=poisoned_id)
            result["poisoned"] = {
                "status": run.status,
                "error_class": run.error_class,
                "retries": run.retries,
            }
        return result

    try:
        alone = scenario(poisoned=False)
        beside = scenario(poisoned=True)
    finally:
        devmodel.stop()
    ratio = beside["healthy_time_to_done_s"]["p95"] / alone["healthy_time_to_done_s"]["p95"]
    print(
        json.dumps(
            {
                "model_latency_s": args.latency,
                "alone": alone,
                "poisoned": beside,
                "p95_poisoned_over_alone": round(ratio, 2),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
