"""An experiment of N items x 2 agent versions with a model that thinks for a fixed time:
how long until every item is answered and scored, on the concurrent worker. Prints JSON.

The dataset's items each hold a short context and a reference; the two versions differ in
their instructions. Checks: exact and contains (and with `--judge` an LLM judge on the same
dev model, one more model call per answer). Each item x version is a run of its own; at
most EXPERIMENT_MAX_CONCURRENT_RUNS of the experiment are in flight at once. Reported:
wall time from start to finished, the one-at-a-time time it replaces (calls x latency), run
time to done p50/p95, and the machine's load average before and after.

Usage: `python bench/experiments.py [--items 100] [--latency 1] [--window 50] [--judge]`
(own data folder var/bench).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from typing import Any

from _setup import devmodel_script, devmodel_start, django_setup, percentile


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--latency", type=float, default=1.0, help="model seconds per call")
    parser.add_argument("--window", type=int, default=50, help="EXPERIMENT_MAX_CONCURRENT_RUNS")
    parser.add_argument("--judge", action="store_true", help="add an LLM-as-judge check")
    args = parser.parse_args()
    os.environ["EXPERIMENT_MAX_CONCURRENT_RUNS"] = str(args.window)
    django_setup()
    import django_rq
    from rq import Worker as RQWorker

    from agentops.agents.services import agent_version_create, agent_version_derive
    from agentops.experiments.models import Dataset, DatasetItem, Result
    from agentops.experiments.services import experiment_create, experiment_start
    from agentops.models import Run
    from agentops.testing.processes import child_env, start_worker
    from tests.factories import AgentFactory, EndpointFactory

    load_before = os.getloadavg()
    devmodel, devmodel_base = devmodel_start()
    model = f"bench-{uuid.uuid4().hex[:8]}"
    devmodel_script(devmodel_base, {"model": model, "latency": args.latency})
    endpoint = EndpointFactory(
        name=model, base_url=f"{devmodel_base}/v1", default_model=model, timeout_seconds=60
    )
    agent = AgentFactory(slug=model, endpoint=endpoint, memory_enabled=False)
    baseline = agent_version_create(agent=agent, author=None, publish=True)
    other = agent_version_derive(
        version=baseline,
        changes={"system_prompt": "You are a test agent. Reply in capitals."},
        author=None,
    )
    dataset = Dataset.objects.create(name=f"bench-{model}")
    DatasetItem.objects.bulk_create(
        DatasetItem(
            dataset=dataset,
            input=f"question {i}",
            context=[
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Hello! How can I help?"},
            ],
            reference=f"You said: question {i}",
            source="import",
        )
        for i in range(args.items)
    )
    checks: list[dict[str, Any]] = [{"kind": "exact"}, {"kind": "contains"}]
    if args.judge:
        checks.append({"kind": "judge", "endpoint": endpoint.pk})
    experiment = experiment_create(
        name="bench",
        dataset=dataset,
        variants=[{"version": baseline.pk}, {"version": other.pk}],
        checks=checks,
        actor=None,
    )
    worker = start_worker(
        child_env(LOG_LEVEL="ERROR", EXPERIMENT_MAX_CONCURRENT_RUNS=str(args.window)),
        name="bench-experiments",
        worker_class="agentops.worker.ConcurrentWorker",
        queues=("runs",),
    )
    name = worker.popen.args[worker.popen.args.index("--name") + 1]
    connection = django_rq.get_connection("runs")
    while name not in {w.name for w in RQWorker.all(connection=connection)}:
        time.sleep(0.1)
    try:
        started = time.perf_counter()
        experiment_start(experiment=experiment, actor=None)
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            experiment.refresh_from_db()
            if experiment.status == "finished":
                break
            time.sleep(0.2)
        wall = time.perf_counter() - started
    finally:
        worker.stop(timeout=30)
        devmodel.stop()
    results = Result.objects.filter(experiment=experiment)
    runs = list(Run.objects.filter(pk__in=results.values_list("run_id", flat=True)))
    done = [(r.finished_at - r.created_at).total_seconds() for r in runs if r.finished_at]
    statuses: dict[str, int] = {}
    for status in results.values_list("status", flat=True):
        statuses[status] = statuses.get(status, 0) + 1
    calls_per_item = 2 if args.judge else 1
    print(
        json.dumps(
            {
                "items": args.items,
                "variants": 2,
                "model_latency_s": args.latency,
                "judge": args.judge,
                "window": args.window,
                "worker": "1 ConcurrentWorker (WORKER_CONCURRENCY default)",
                "finished": experiment.status == "finished",
                "results": statuses,
                "wall_s": round(wall, 1),
                "one_at_a_time_s": round(2 * args.items * calls_per_item * args.latency, 1),
                "run_time_to_done_s": {
                    "p50": round(percentile(done, 50), 2),
                    "p95": round(percentile(done, 95), 2),
                }
                if done
                else None,
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )
    return 0 if experiment.status == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
