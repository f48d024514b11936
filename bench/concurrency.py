"""Many conversations at once: how long each takes to finish when the model thinks for a
fixed time, with the forking worker and with the concurrent worker. Prints JSON.

Each scenario posts N conversations at the same moment (one message each, one model call
each) to fresh worker processes, against the development model server in its own process
with a fixed latency. Reported per scenario: time to done (run created → finished) p50,
p95, max; queue-to-start p95 (enqueued → claimed by a worker); runs/s; peak RSS per worker
process (its work horses included), of the scheduler and in total (the web server is not
started: runs are posted through the service layer); and, for the flood scenario, the time to
done of a trickle of runs from a second agent posted while the first floods the queue (the
flooding agent holds at most its limit of runs in flight, AGENT_MAX_CONCURRENT_RUNS).

Usage: `python bench/concurrency.py [--quick] [--large] [--fairness]` (own data folder var/bench).
`--large` adds 1,000 runs with a 10 s latency on 4 worker processes.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from typing import Any

from _setup import devmodel_script, devmodel_start, django_setup, percentile

FORKING = "agentops.worker.Worker"
CONCURRENT = "agentops.worker.ConcurrentWorker"


class RssSampler(threading.Thread):
    """Samples the resident memory of processes (and their children) every 0.2 s."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak: dict[int, int] = dict.fromkeys(pids, 0)
        self.peak_total = 0
        self.cpu: dict[int, float] = dict.fromkeys(pids, 0.0)
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stopped.wait(0.2):
            total = 0
            for pid in self.pids:
                try:
                    process = psutil.Process(pid)
                    rss = process.memory_info().rss
                    times = process.cpu_times()
                    cpu = times.user + times.system + times.children_user + times.children_system
                    for child in process.children(recursive=True):
                        rss += child.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                self.peak[pid] = max(self.peak[pid], rss)
                self.cpu[pid] = cpu
                total += rss
            self.peak_total = max(self.peak_total, total)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10 conversations only")
    parser.add_argument("--large", action="store_true", help="also 1,000 runs, 10 s latency")
    parser.add_argument(
        "--only", type=int, default=0, help="just N conversations on concurrent workers"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes for --only")
    parser.add_argument(
        "--fairness", action="store_true", help="only the flood beside a trickle, twice"
    )
    args = parser.parse_args()
    django_setup()
    import django_rq
    from django.conf import settings
    from rq import Worker as RQWorker

    from agentops.models import FINISHED_RUN_STATUSES, Run
    from agentops.runtime.services import session_create, session_post_message
    from agentops.testing.processes import (
        Proc,
        child_env,
        start_scheduler,
        start_worker,
    )
    from tests.factories import AgentFactory, EndpointFactory

    devmodel, devmodel_base = devmodel_start()
    base_url = f"{devmodel_base}/v1"

    def agent_for(latency: float, limit: int | None = None) -> Any:
        model = f"bench-{uuid.uuid4().hex[:8]}"
        devmodel_script(devmodel_base, {"model": model, "latency": latency})
        endpoint = EndpointFactory(
            name=model, base_url=base_url, default_model=model, timeout_seconds=60
        )
        return AgentFactory(
            slug=model, endpoint=endpoint, memory_enabled=False, max_concurrent_runs=limit
        )

    def wait_workers(procs: list[Proc]) -> None:
        """Until these very workers listen (a previous scenario's may still be registered)."""
        connection = django_rq.get_connection("runs")
        names = {proc.popen.args[proc.popen.args.index("--name") + 1] for proc in procs}
        deadline = time.monotonic() + 60
        while names - {w.name for w in RQWorker.all(connection=connection)}:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start")
            time.sleep(0.1)

    def figures(run_ids: list[Any]) -> dict[str, Any]:
        runs = list(Run.objects.filter(pk__in=run_ids))
        if not runs:
            return {"runs": 0}
        done = [(r.finished_at - r.created_at).total_seconds() for r in runs if r.finished_at]
        waits = [
            (r.started_at - r.enqueued_at).total_seconds()
            for r in runs
            if r.started_at and r.enqueued_at
        ]
        first = min(r.created_at for r in runs)
        last = max((r.finished_at for r in runs if r.finished_at), default=first)
        statuses: dict[str, int] = {}
        for run in runs:
            statuses[run.status] = statuses.get(run.status, 0) + 1
        return {
            "runs": len(runs),
            "statuses": statuses,
            "time_to_done_s": {
                "p50": round(percentile(done, 50), 2),
                "p95": round(percentile(done, 95), 2),
                "max": round(max(done), 2),
            }
            if done
            else None,
            "queue_to_start_p95_s": round(percentile(waits, 95), 3) if waits else None,
            "runs_per_s": round(len(done) / max((last - first).total_seconds(), 1e-6), 1),
        }

    def scenario(
        *,
        conversations: int,
        latency: float,
        worker_class: str,
        workers: int = 1,
        concurrency: int | None = None,
        trickle: int = 0,
        trickle_latency: float | None = None,
        agent_limit: int | None = None,
        timeout: float = 900,
    ) -> dict[str, Any]:
        flood_agent = agent_for(latency, agent_limit)
        trickle_agent = agent_for(trickle_latency or latency) if trickle else None
        sessions = [
            session_create(agent=flood_agent, external_user=f"c-{i}") for i in range(conversations)
        ]
        extra = {"WORKER_CONCURRENCY": str(concurrency)} if concurrency else {}
        env = child_env(LOG_LEVEL="ERROR", **extra)
        procs = [
            start_worker(env, name=f"bench-conc-{i}", worker_class=worker_class)
            for i in range(workers)
        ]
        scheduler = start_scheduler(env)  # wakes runs that wait (a retry, a breaker)
        wait_workers(procs)
        sampler = RssSampler([p.pid for p in procs] + [scheduler.pid])
        sampler.start()
        trickle_ids: list[Any] = []
        try:
            started = time.perf_counter()
            ids = [session_post_message(session=s, content="hello").pk for s in sessions]
            posted = time.perf_counter() - started
            if trickle_agent is not None:
                for i in range(trickle):
                    session = session_create(agent=trickle_agent, external_user=f"t-{i}")
                    trickle_ids.append(session_post_message(session=session, content="hi").pk)
                    time.sleep(0.5)
            deadline = time.monotonic() + timeout
            while (
                Run.objects.filter(pk__in=ids + trickle_ids)
                .exclude(status__in=FINISHED_RUN_STATUSES)
                .exists()
                and time.monotonic() < deadline
            ):
                time.sleep(0.2)
        finally:
            sampler.stopped.set()
            sampler.join()
            for proc in [*procs, scheduler]:
                proc.stop(timeout=30)
        result: dict[str, Any] = {
            "conversations": conversations,
            "model_latency_s": latency,
            "worker_class": worker_class,
            "worker_processes": workers,
            "agent_limit": settings.AGENT_MAX_CONCURRENT_RUNS
            if agent_limit is None
            else agent_limit,
            "worker_concurrency": (concurrency or settings.WORKER_CONCURRENCY)
            if worker_class == CONCURRENT
            else 1,
            "posted_in_s": round(posted, 2),
            **figures(ids),
            "peak_rss_mb_per_worker_process": [round(sampler.peak[p.pid] / 2**20) for p in procs],
            "peak_rss_mb_scheduler": round(sampler.peak[scheduler.pid] / 2**20),
            "peak_rss_mb_total": round(sampler.peak_total / 2**20),
            "worker_cpu_s": round(sum(sampler.cpu.values()), 1),
        }
        if trickle_ids:
            result["trickle"] = {
                "model_latency_s": trickle_latency or latency,
                **figures(trickle_ids),
            }
        print(json.dumps(result, default=str), file=sys.stderr, flush=True)
        return result

    results: list[dict[str, Any]] = []
    try:
        if args.only:
            results.append(
                scenario(
                    conversations=args.only,
                    latency=2,
                    worker_class=CONCURRENT,
                    workers=args.workers,
                )
            )
            args.quick, args.large = True, False
        elif args.fairness:
            args.quick, args.large = True, False
        else:
            # `make run` before: one forking worker; now: WORKER_PROCESSES (2) concurrent ones.
            results.append(scenario(conversations=10, latency=2, worker_class=FORKING))
            results.append(
                scenario(conversations=10, latency=2, worker_class=CONCURRENT, workers=2)
            )
        if not args.quick:
            for workers in (1, 2):
                results.append(
                    scenario(conversations=100, latency=2, worker_class=CONCURRENT, workers=workers)
                )
            results.append(
                scenario(conversations=0, latency=2, worker_class=CONCURRENT, workers=2, trickle=10)
            )
        if not args.quick or args.fairness:
            # A flood that outgrows make run's 200 slots (a 10 s model), and beside it a
            # trickle from another agent (2 s): without a limit, then with the default one.
            for limit in (0, None):
                results.append(
                    scenario(
                        conversations=400,
                        latency=10,
                        worker_class=CONCURRENT,
                        workers=2,
                        trickle=10,
                        trickle_latency=2,
                        agent_limit=limit,
                    )
                )
        if args.large:
            results.append(
                scenario(
                    conversations=1000,
                    latency=10,
                    worker_class=CONCURRENT,
                    workers=4,
                    concurrency=250,
                    agent_limit=0,  # one agent may use every slot here
                )
            )
    finally:
        devmodel.stop()
    print(json.dumps({"scenarios": results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
