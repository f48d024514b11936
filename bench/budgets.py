"""What budgets cost a run, on the embedded services, the dev model in a process of its own.
Prints JSON.

- `steps`: runs driven one after another in this process (`run_execute`, what a worker's job
  calls), each three tool calls and an answer (four model steps), counted against three
  budgets (the agent's cost per day, its tokens per month, the end user's runs per minute):
  the time the run's budget work takes (reading its reservations, charging each step,
  releasing them at the end), per step of it (p50/p95/max over runs; target ≤ 1 ms p95), and
  the driving thread's CPU per step against the same runs without budgets.
- `admission`: a post's time (`session_post_message`) without any budget, and with the three
  budgets applying (their reads and conditional upserts), p50/p95.

Usage: `python bench/budgets.py [--runs 100]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from _setup import devmodel_start, django_setup, percentile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    django_setup()

    import django_rq
    from django.conf import settings

    from agentops.budgets import services as budgets
    from agentops.budgets.models import Budget
    from agentops.models import Run
    from agentops.runtime import services as runtime_services
    from agentops.runtime.loop import run_execute
    from agentops.runtime.services import session_create, session_post_message
    from tests.factories import AgentFactory, EndpointFactory
    from tools.services import python_tools_sync
    from tracing.models import ModelPrice

    tools = python_tools_sync()
    model_proc, base = devmodel_start()
    spent_ms: dict[Any, float] = defaultdict(float)

    def timed(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, *a: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(self, *a, **kw)
            finally:
                spent_ms[str(self.run_id)] += 1000 * (time.perf_counter() - started)

        return wrapper

    admitted_ms: list[float] = []

    def admit_timed(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*a, **kw)
            finally:
                admitted_ms.append(1000 * (time.perf_counter() - started))

        return wrapper

    runtime_services.budget_admit = admit_timed(runtime_services.budget_admit)  # type: ignore[assignment]
    runtime_services.budget_holds_record = admit_timed(runtime_services.budget_holds_record)  # type: ignore[assignment]
    budgets.RunSpend.__init__ = timed(budgets.RunSpend.__init__)  # type: ignore[method-assign]
    budgets.RunSpend.flush = timed(budgets.RunSpend.flush)  # type: ignore[method-assign]
    budgets.RunSpend.release = timed(budgets.RunSpend.release)  # type: ignore[method-assign]

    def make_agent() -> Any:
        model = f"bench-{uuid.uuid4().hex[:8]}"
        endpoint = EndpointFactory(name=model, base_url=f"{base}/v1", default_model=model)
        ModelPrice.objects.create(model=model, input_per_million=1, output_per_million=2)
        agent = AgentFactory(
            slug=model, endpoint=endpoint, memory_enabled=False, max_concurrent_runs=0
        )
        agent.tools.add(*tools)
        return agent

    def budgets_for(agent: Any) -> None:
        for name, scope, metric, period, limit in (
            ("cost", "agent", "cost", "day", 10**6),
            ("tokens", "agent", "tokens", "month", 10**12),
            ("pace", "end_user", "runs", "minute", 10**6),
        ):
            budgets.budget_create(
                actor=None,
                name=f"{agent.slug}-{name}",
                scope=scope,
                agent=agent,
                metric=metric,
                period=period,
                limit=Decimal(limit),
            )

    def drive(agent: Any, runs: int) -> tuple[list[Any], float, list[float]]:
        """Runs one after another in this thread: their ids, CPU seconds, post times (ms)."""
        run_ids, cpu, posts = [], 0.0, []
        for index in range(-3, runs):  # the first three warm up, uncounted
            session = session_create(agent=agent, external_user=f"u{index}")
            started = time.perf_counter()
            run = session_post_message(session=session, content="chain 3 echo")
            posted = time.perf_counter() - started
            before = time.thread_time()
            run_execute(run_id=run.pk)
            if index >= 0:
                cpu += time.thread_time() - before
                posts.append(1000 * posted)
                run_ids.append(run.pk)
        return run_ids, cpu, posts

    def steps(run_ids: list[Any]) -> int:
        return sum(Run.objects.filter(pk__in=run_ids).values_list("step", flat=True))

    out: dict[str, object] = {"runs": args.runs}
    try:
        Budget.objects.all().delete()  # an earlier run's: "without" means no budget at all
        plain, plain_cpu, plain_posts = drive(make_agent(), args.runs)
        agent = make_agent()
        budgets_for(agent)
        counted, counted_cpu, counted_posts = drive(agent, args.runs)
        statuses = set(Run.objects.filter(pk__in=counted).values_list("status", flat=True))
        assert statuses == {"succeeded"}, statuses
        run_steps = dict(Run.objects.filter(pk__in=counted).values_list("pk", "step"))
        per_step = [spent_ms[str(pk)] / max(1, run_steps[pk]) for pk in counted]
        out["steps"] = {
            "budgets": 3,
            "steps": steps(counted),
            "budget_ms_per_step_p50": round(statistics.median(per_step), 3),
            "budget_ms_per_step_p95": round(percentile(per_step, 95), 3),
            "budget_ms_per_step_max": round(max(per_step), 3),
            "cpu_ms_per_step_without": round(1000 * plain_cpu / steps(plain), 2),
            "cpu_ms_per_step_with": round(1000 * counted_cpu / steps(counted), 2),
        }
        per_post = [a + b for a, b in zip(admitted_ms[6::2], admitted_ms[7::2], strict=False)]
        out["admission"] = {
            "budget_ms_per_post_p50": round(statistics.median(per_post), 3),
            "budget_ms_per_post_p95": round(percentile(per_post, 95), 3),
            "post_ms_p50_without": round(statistics.median(plain_posts), 2),
            "post_ms_p95_without": round(percentile(plain_posts, 95), 2),
            "post_ms_p50_with_3_budgets": round(statistics.median(counted_posts), 2),
            "post_ms_p95_with_3_budgets": round(percentile(counted_posts, 95), 2),
        }
    finally:
        model_proc.stop()
        django_rq.get_queue(settings.RUN_QUEUE).empty()  # their jobs: no worker is to run them
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
