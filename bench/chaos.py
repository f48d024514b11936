"""`make chaos`: kill -9 workers mid-run N times; print recovery figures as JSON.

Targets: every run succeeds or hands off with a stated reason; no non-idempotent call runs
twice; no completed call runs again; recovery p95 under 60 s. Calls of tools that honour an
idempotency key, in flight at a kill, are sent again (`keyed_calls_resent`) with 0 handoffs
(`keyed_calls_handed_off`) and 0 changes made twice (`keyed_duplicated_effects`); those of
tools that honour none are handed off (`unknown_outcomes_handed_off`).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

from _setup import django_setup


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--stale-seconds", default="10")
    parser.add_argument(
        "--worker-class",
        default="agentops.worker.ConcurrentWorker",
        help="agentops.worker.ConcurrentWorker (make run's) or agentops.worker.Worker (forking)",
    )
    args = parser.parse_args()
    django_setup()
    import os

    from agentops.testing.chaos import chaos_run
    from agentops.testing.processes import DevModel
    from tests.factories import AgentFactory, EndpointFactory
    from tools.services import python_tools_sync

    devmodel = DevModel()
    endpoint = EndpointFactory(
        name=f"bench-{uuid.uuid4().hex[:8]}",
        base_url=devmodel.url,
        default_model=f"chaos-{uuid.uuid4().hex[:8]}",
    )
    agent = AgentFactory(slug=f"bench-{uuid.uuid4().hex[:8]}", endpoint=endpoint, max_steps=10)
    agent.tools.add(*python_tools_sync())
    env = dict(os.environ, RUN_STALE_SECONDS=args.stale_seconds, RUN_LOST_JOB_SECONDS="15")
    report = chaos_run(
        agent=agent,
        env=env,
        kills=args.kills,
        workers=args.workers,
        timeout=3600,
        worker_class=args.worker_class,
    )
    figures = report.figures()
    figures["worker_class"] = args.worker_class
    figures["stale_after_s"] = int(args.stale_seconds)
    print(json.dumps(figures, indent=2))
    devmodel.stop()
    return 0 if not figures["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
