"""What a transfer between agents adds to a conversation, on the embedded services, the dev
model in a process of its own thinking `--latency` s per answer. Prints JSON.

Runs driven one after another in this process (`run_execute`, what a worker's job calls; it
drives the target's run too, which the transfer hands to the same job): time from the post to the answer
for a message answered by billing directly, for one the triage agent transfers (its model
call, then billing's), for one a routing rule sends to billing before any model call, and
for one a routing classifier sends there (its one model call, then billing's). A
transfer's cost is the difference beyond the model calls (target: ≤ 20 ms).

Usage: `python bench/transfers.py [--runs 50] [--latency 0.3]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

from _setup import devmodel_script, devmodel_start, django_setup, percentile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.3)
    args = parser.parse_args()
    django_setup()

    import django_rq
    from django.conf import settings

    from agentops.agent_config import transfers_validate
    from agentops.agents.services import agent_version_create
    from agentops.models import Agent
    from agentops.runtime.loop import run_execute
    from agentops.runtime.services import session_create, session_post_message
    from tests.factories import AgentFactory, EndpointFactory

    model_proc, base = devmodel_start()
    model = f"bench-{uuid.uuid4().hex[:8]}"
    endpoint = EndpointFactory(
        name=f"bench-{uuid.uuid4().hex[:8]}", base_url=f"{base}/v1", default_model=model
    )
    devmodel_script(base, {"model": model, "latency": args.latency})
    suffix = uuid.uuid4().hex[:6]

    def published(slug: str, transfers: list[dict] | None = None) -> Agent:
        agent = AgentFactory(
            slug=f"{slug}-{suffix}", endpoint=endpoint, memory_enabled=False, max_concurrent_runs=0
        )
        if transfers:
            agent.transfers = transfers_validate(value=transfers, agent_slug=agent.slug)
            agent.save()
        agent_version_create(agent=agent, author=None, publish=True)
        agent.refresh_from_db()
        return agent

    billing = published("billing")
    about = "Billing: refunds and invoices"
    triage = published("triage", [{"agent": billing.slug, "description": about}])
    routed = published(
        "router", [{"agent": billing.slug, "description": about, "when": {"pattern": "refund"}}]
    )
    classified = published(
        "classified", [{"agent": billing.slug, "description": about, "when": {"classify": True}}]
    )

    def converse(agent: Agent, count: int) -> list[float]:
        """Seconds from each post to its answer, the run chain driven in this thread."""
        took = []
        for index in range(-2, count):  # two to warm up, uncounted
            session = session_create(agent=agent, external_user=f"u{index}")
            started = time.perf_counter()
            run = session_post_message(session=session, content="a refund, please")
            run_execute(run_id=run.pk)  # and the run it transfers to, in the same job
            if index >= 0:
                took.append(time.perf_counter() - started)
        return took

    out: dict[str, object] = {"runs": args.runs, "model_latency_s": args.latency}
    try:
        direct = converse(billing, args.runs)
        transferred = converse(triage, args.runs)
        by_rule = converse(routed, args.runs)
        by_classifier = converse(classified, args.runs)
    finally:
        model_proc.stop()
        django_rq.get_queue(settings.RUN_QUEUE).empty()  # their jobs: no worker is to run them

    def summary(took: list[float]) -> dict[str, float]:
        return {
            "done_s_p50": round(statistics.median(took), 3),
            "done_s_p95": round(percentile(took, 95), 3),
        }

    out["direct"] = summary(direct)
    out["transferred_by_the_model"] = summary(transferred)
    out["routed_by_rule"] = summary(by_rule)
    out["routed_by_classifier"] = summary(by_classifier)
    base_p50 = statistics.median(direct)
    out["transfer_ms_beyond_model_calls_p50"] = round(
        1000 * (statistics.median(transferred) - base_p50 - args.latency), 1
    )
    out["route_ms_p50"] = round(1000 * (statistics.median(by_rule) - base_p50), 1)
    out["classifier_route_ms_beyond_its_model_call_p50"] = round(
        1000 * (statistics.median(by_classifier) - base_p50 - args.latency), 1
    )
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
