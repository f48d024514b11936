"""A burst of concurrent API writes against a real web server (uvicorn) and one forking RQ
worker, on the embedded services. Prints JSON.

For each pool timeout: 200 clients post a message to 200 sessions at the same moment
(`POST /api/sessions/{id}/messages`); then every session and accepted run is read back.
Reported: status counts and latencies of the burst, the time from the burst's end until
the first read and every read succeeded, the web server's Postgres connections afterwards,
and the time until every accepted run finished. Usage: `python bench/burst.py [--burst N]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from _setup import django_setup, percentile

APP_NAME = "agentops-bench-web"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--pool-timeouts", default="10,1", help="seconds, comma separated")
    args = parser.parse_args()
    django_setup()
    import httpx
    from django.db import connection

    from agentops.auth import api_key_create
    from agentops.models import FINISHED_RUN_STATUSES, Run
    from agentops.runtime.services import session_create
    from agentops.testing.processes import (
        DevModel,
        child_env,
        free_port,
        start_web,
        start_worker,
    )
    from tests.factories import AgentFactory, EndpointFactory, UserFactory

    devmodel = DevModel()
    user = UserFactory(username=f"bench-{uuid.uuid4().hex[:8]}", role="operator")
    key = api_key_create(user=user, name="burst")[1]
    endpoint = EndpointFactory(
        name=f"bench-{uuid.uuid4().hex[:8]}",
        base_url=devmodel.url,
        default_model=f"bench-{uuid.uuid4().hex[:8]}",
    )
    agent = AgentFactory(
        slug=f"bench-{uuid.uuid4().hex[:8]}", endpoint=endpoint, memory_enabled=False
    )
    worker = start_worker(child_env(), name="bench-burst")
    results: dict[str, object] = {
        "burst": args.burst,
        "db_pool_size": args.pool_size,
        "scenarios": [],
    }

    def web_backends() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME]
            )
            return int(cursor.fetchone()[0])

    try:
        for timeout in [float(t) for t in args.pool_timeouts.split(",")]:
            sessions = [
                session_create(agent=agent, external_user=f"burst-{i}") for i in range(args.burst)
            ]
            port = free_port()
            env = child_env(
                DB_POOL_SIZE=str(args.pool_size),
                DB_POOL_TIMEOUT=str(timeout),
                PGAPPNAME=APP_NAME,
                LOG_LEVEL="ERROR",
            )
            web = start_web(env, port)
            limits = httpx.Limits(max_connections=args.burst, max_keepalive_connections=args.burst)
            try:
                with httpx.Client(
                    base_url=f"http://127.0.0.1:{port}",
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=120,
                    limits=limits,
                ) as client:
                    barrier = threading.Barrier(args.burst)

                    def post(session, client=client, barrier=barrier):  # type: ignore[no-untyped-def]
                        barrier.wait()
                        started = time.perf_counter()
                        response = client.post(
                            f"/api/sessions/{session.pk}/messages", json={"content": "hello"}
                        )
                        return response, time.perf_counter() - started

                    burst_started = time.perf_counter()
                    with ThreadPoolExecutor(args.burst) as pool:
                        outcomes = list(pool.map(post, sessions))
                    burst_ended = time.perf_counter()
                    statuses = Counter(str(r.status_code) for r, _ in outcomes)
                    latencies = [seconds * 1000 for _, seconds in outcomes]
                    accepted = [r.json()["run"] for r, _ in outcomes if r.status_code == 202]
                    first_ok = None
                    reads: Counter[str] = Counter()
                    for path in [f"/api/sessions/{s.pk}" for s in sessions] + [
                        f"/api/runs/{run}" for run in accepted
                    ]:
                        status = client.get(path).status_code
                        reads[str(status)] += 1
                        if status == 200 and first_ok is None:
                            first_ok = time.perf_counter() - burst_ended
                    reads_done = time.perf_counter() - burst_ended
                    connections_after = web_backends()
                deadline = time.monotonic() + 600
                while (
                    Run.objects.filter(pk__in=accepted)
                    .exclude(status__in=FINISHED_RUN_STATUSES)
                    .exists()
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.1)
                runs_done = time.perf_counter() - burst_ended
                finished = Counter(
                    Run.objects.filter(pk__in=accepted).values_list("status", flat=True)
                )
            finally:
                web.stop()
            results["scenarios"].append(  # type: ignore[attr-defined]
                {
                    "db_pool_timeout_s": timeout,
                    "statuses": dict(statuses),
                    "retry_after_on_every_503": all(
                        r.headers.get("Retry-After") for r, _ in outcomes if r.status_code == 503
                    ),
                    "burst_s": round(burst_ended - burst_started, 2),
                    "latency_ms": {
                        "p50": round(percentile(latencies, 50)),
                        "p95": round(percentile(latencies, 95)),
                        "max": round(max(latencies)),
                    },
                    "reads_after_burst": dict(reads),
                    "first_read_ok_after_s": round(first_ok, 3) if first_ok is not None else None,
                    "all_reads_done_after_s": round(reads_done, 2),
                    "web_db_connections_after": connections_after,
                    "accepted_runs": len(accepted),
                    "accepted_runs_finished": dict(finished),
                    "all_runs_finished_after_s": round(runs_done, 1),
                }
            )
    finally:
        worker.stop()
        devmodel.stop()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
