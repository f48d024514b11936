"""What a transfer between agents adds to a conversation, on the embedded services, the dev
model in a process of its own thinking `--latency` s per answer. Prints JSON.

Conversations of the four kinds in turn, driven one after another in this process (`run_execute`, what a worker's job calls; it
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
    from django.db.models import Sum

    from agentops.agent_config import transfers_validate
    from agentops.agents.services import agent_version_create
    from agentops.models import Agent, Run
    from agentops.runtime.loop import run_execute
    from agentops.runtime.services import session_create, session_post_message
    from tests.factories import AgentFactory, EndpointFactory
    from tracing.models import Span

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

    def converse(agent: Agent) -> tuple[float, float]:
        """Seconds from a post to its answer, the run chain driven in this thread, and the
        seconds of it spent in model calls (their `model.call` spans: the model's own time,
        HTTP included, which no transfer can save)."""
        session = session_create(agent=agent, external_user="u")
        started = time.perf_counter()
        run = session_post_message(session=session, content="a refund, please")
        run_execute(run_id=run.pk)  # and the run it transfers to, in the same job
        done = time.perf_counter() - started
        runs = Run.objects.filter(session=session).values_list("pk", flat=True)
        model_ms = Span.objects.filter(trace_id__in=list(runs), name="model.call").aggregate(
            ms=Sum("duration_ms")
        )["ms"]
        return done, (model_ms or 0) / 1000

    out: dict[str, object] = {"runs": args.runs, "model_latency_s": args.latency}
    try:
        kinds = (billing, triage, routed, classified)
        took: dict[Agent, list[tuple[float, float]]] = {agent: [] for agent in kinds}
        for index in range(-2, args.runs):  # two rounds to warm up, uncounted
            for agent in kinds:  # in turn, so a change of the machine's load meets them all
                conversation = converse(agent)
                if index >= 0:
                    took[agent].append(conversation)
        direct, transferred, by_rule, by_classifier = (took[agent] for agent in kinds)
    finally:
        model_proc.stop()
        django_rq.get_queue(settings.RUN_QUEUE).empty()  # their jobs: no worker is to run them

    def summary(took: list[tuple[float, float]]) -> dict[str, float]:
        done = [d for d, _ in took]
        return {
            "done_s_p50": round(statistics.median(done), 3),
            "done_s_p95": round(percentile(done, 95), 3),
            "model_calls_s_p50": round(statistics.median(m for _, m in took), 3),
        }

    def beyond_model_calls_ms(took: list[tuple[float, float]]) -> float:
        """What the conversation took besides its model calls, more than a direct answer."""
        base = statistics.median(d - m for d, m in direct)
        return round(1000 * (statistics.median(d - m for d, m in took) - base), 1)

    out["direct"] = summary(direct)
    out["transferred_by_the_model"] = summary(transferred)
    out["routed_by_rule"] = summary(by_rule)
    out["routed_by_classifier"] = summary(by_classifier)
    base_p50 = statistics.median(d for d, _ in direct)
    out["transfer_ms_beyond_model_calls_p50"] = beyond_model_calls_ms(transferred)
    out["transfer_ms_beyond_model_latency_p50"] = round(
        1000 * (statistics.median(d for d, _ in transferred) - base_p50 - args.latency), 1
    )
    out["route_ms_p50"] = beyond_model_calls_ms(by_rule)
    out["classifier_route_ms_beyond_its_model_call_p50"] = beyond_model_calls_ms(by_classifier)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
