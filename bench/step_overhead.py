"""Infrastructure time per agent step (everything but the model's own latency) with a
zero-latency model, on the embedded services, through real RQ workers. Prints JSON.

Per step: the `step` span minus its `model.call` spans, plus the step's `checkpoint`
span (the committed write of messages, counters and trace records). Context assembly,
token counting, tool validation and tracing are all on. Compared: a short conversation
and one of 2,000 messages; RQ's forking Worker, its non-forking SimpleWorker and the
concurrent worker (one run at a time, 40 at once with an instant model — they queue for one
GIL —, and `make run`'s shape: 2 processes, 100 conversations, a model thinking 1 s per
call); steps/s with 1 and 2 workers; the CPU time per step of runs driven one after another
in the bench's own thread (`inline`: Python per step, little disturbed by a loaded machine);
and throughput: steps/s of one concurrent worker process
kept full with 40 and with 200 conversations in flight, an instant model (every run queued
before the worker starts; steps counted while all its slots were busy).

Usage: `python bench/step_overhead.py [--scenarios NAME,...]` (names in SCENARIOS; default all).
Each worker's pid is printed to stderr as it starts (to profile one, e.g. `py-spy record -p`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections import defaultdict

from _setup import devmodel_start, django_setup, percentile

SCENARIOS = (
    "inline",
    "forking",
    "simple",
    "long-forking",
    "long-simple",
    "two-forking",
    "two-simple",
    "concurrent-one",
    "concurrent-40",
    "concurrent-long",
    "make-run",
    "throughput-40",
    "throughput-200",
)


def process_cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user + system, all its threads): a figure that a loaded
    machine disturbs far less than steps/s."""
    import os

    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated names")
    chosen = [name for name in parser.parse_args().scenarios.split(",") if name]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    django_setup()
    import os

    from django.conf import settings

    from agentops.models import Message, Role, Run
    from agentops.runtime.checkpoint import messages_append
    from agentops.runtime.context import message_tokens
    from agentops.runtime.services import session_create, session_post_message
    from agentops.testing.processes import (
        CONCURRENT_WORKER,
        FORKING_WORKER,
        DevModel,
        start_worker,
    )
    from tests.factories import AgentFactory, EndpointFactory
    from tools.services import python_tools_sync
    from tracing.models import Span

    devmodel = DevModel()
    env = dict(os.environ)
    tools = python_tools_sync()

    def make_agent(latency: float = 0, max_concurrent_runs: int | None = None):
        endpoint = EndpointFactory(
            name=f"bench-{uuid.uuid4().hex[:8]}",
            base_url=devmodel.url,
            default_model=f"bench-{uuid.uuid4().hex[:8]}",
        )
        if latency:
            devmodel.script(endpoint.default_model, latency=latency)
        agent = AgentFactory(
            slug=f"bench-{uuid.uuid4().hex[:8]}",
            endpoint=endpoint,
            max_steps=10,
            memory_enabled=False,
            max_concurrent_runs=max_concurrent_runs,
        )
        agent.tools.add(*tools)
        return agent

    def long_session(agent):
        session = session_create(agent=agent, external_user="long")
        history = []
        for index in range(2000):
            text = f"message {index}: the user and the agent talk about order #{index} and its delivery"
            history.append(
                Message(
                    role=Role.USER if index % 2 == 0 else Role.ASSISTANT,
                    content=text,
                    token_count=message_tokens(content=text),
                )
            )
        messages_append(session_id=session.pk, messages=history)
        warm = session_post_message(session=session, content="hello")  # folds history once
        wait([warm.pk])
        return session

    def wait(run_ids, timeout=600):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not Run.objects.filter(
                pk__in=run_ids, status__in=["queued", "running", "waiting"]
            ).exists():
                return
            time.sleep(0.05)
        raise RuntimeError("runs did not finish")

    def wait_ready(procs, timeout=60):
        """The clock starts once every worker has registered (after its warm-up)."""
        import django_rq
        from rq import Worker

        names = {proc.popen.args[proc.popen.args.index("--name") + 1] for proc in procs}
        redis = django_rq.get_connection("runs")
        deadline = time.monotonic() + timeout
        while names - {w.name for w in Worker.all(connection=redis)}:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.05)

    def step_infra_ms(run_ids):
        spans = Span.objects.filter(
            trace_id__in=run_ids, name__in=["step", "model.call", "checkpoint"]
        )
        by_trace = defaultdict(list)
        for span in spans:
            by_trace[span.trace_id].append(span)
        values = []
        for trace in by_trace.values():
            parents = {s.span_id: s.parent_span_id for s in trace}
            steps = {s.span_id for s in trace if s.name == "step"}
            model = defaultdict(float)
            for s in trace:
                if s.name == "model.call":  # the model's own time, wherever it sits under a step
                    ancestor = s.parent_span_id
                    while ancestor and ancestor not in steps:
                        ancestor = parents.get(ancestor, "")
                    model[ancestor] += s.duration_ms
            checkpoints = {
                s.attributes.get("step"): s.duration_ms for s in trace if s.name == "checkpoint"
            }
            for s in trace:
                if s.name == "step":
                    values.append(
                        s.duration_ms
                        - model[s.span_id]
                        + checkpoints.get(s.attributes.get("step"), 0)
                    )
        return values

    def scenario(
        *,
        long: bool,
        workers: int,
        simple: bool,
        runs: int,
        concurrent: bool = False,
        concurrency: int = 0,
        latency: float = 0,
    ):
        agent = make_agent(latency)
        worker_class = CONCURRENT_WORKER if concurrent else FORKING_WORKER
        worker_env = {**env, "WORKER_CONCURRENCY": str(concurrency)} if concurrency else env
        procs = [
            start_worker(worker_env, name="bench", simple=simple, worker_class=worker_class)
            for _ in range(workers)
        ]
        for proc in procs:
            print(f"worker pid {proc.pid}", file=sys.stderr, flush=True)
        try:
            wait_ready(procs)
            sessions = [long_session(agent)] if long else []
            run_ids = []
            started = time.monotonic()
            for index in range(runs):
                if long:
                    session = sessions[0]
                    run = session_post_message(
                        session=session, content=f'call echo {{"text": "{index}"}}'
                    )
                    wait([run.pk])
                else:
                    session = session_create(agent=agent, external_user=f"u{index}")
                    run = session_post_message(
                        session=session, content=f'call echo {{"text": "{index}"}}'
                    )
                run_ids.append(run.pk)
            wait(run_ids)
            elapsed = time.monotonic() - started
        finally:
            for proc in procs:
                proc.stop()
        steps = sum(Run.objects.filter(pk__in=run_ids).values_list("step", flat=True))
        infra = step_infra_ms(run_ids)
        model = list(
            Span.objects.filter(trace_id__in=run_ids, name="model.call").values_list(
                "duration_ms", flat=True
            )
        )
        return {
            "conversation": "2000 messages" if long else "short",
            "workers": workers,
            "worker_class": "SimpleWorker"
            if simple
            else "ConcurrentWorker (threads)"
            if concurrent
            else "Worker (forking)",
            "runs": runs,
            "worker_concurrency": (concurrency or settings.WORKER_CONCURRENCY) if concurrent else 1,
            "model_latency_s": latency,
            "steps": steps,
            "step_infra_ms_p50": round(statistics.median(infra), 2),
            "step_infra_ms_p95": round(percentile(infra, 95), 2),
            "model_call_ms_p50": round(statistics.median(model), 2),
            "steps_per_s": round(steps / elapsed, 1),
        }

    def throughput(*, in_flight: int, runs: int):
        """One concurrent worker with `in_flight` slots and `runs` runs queued before it starts:
        steps/s while every slot was busy (from the start of the `in_flight`-th run to the end
        of the `runs - in_flight`-th), counted by their checkpoints."""
        agent = make_agent(max_concurrent_runs=0)
        run_ids = []
        for index in range(runs):
            session = session_create(agent=agent, external_user=f"t{index}")
            run = session_post_message(session=session, content=f'call echo {{"text": "{index}"}}')
            run_ids.append(run.pk)
        proc = start_worker(
            {**env, "WORKER_CONCURRENCY": str(in_flight)},
            name="bench",
            worker_class=CONCURRENT_WORKER,
        )
        print(f"worker pid {proc.pid}", file=sys.stderr, flush=True)
        try:
            wait_ready([proc])
            cpu_ready = process_cpu_seconds(proc.pid)  # after its start and warm-up
            wait(run_ids)
            cpu_s = process_cpu_seconds(proc.pid) - cpu_ready
        finally:
            proc.stop()
        started = sorted(Run.objects.filter(pk__in=run_ids).values_list("started_at", flat=True))
        finished = sorted(Run.objects.filter(pk__in=run_ids).values_list("finished_at", flat=True))
        full_from, full_to = started[in_flight - 1], finished[runs - in_flight - 1]
        steps_full = Span.objects.filter(
            trace_id__in=run_ids,
            name="checkpoint",
            end_time__gt=full_from,
            end_time__lte=full_to,
        ).count()
        steps = sum(Run.objects.filter(pk__in=run_ids).values_list("step", flat=True))
        elapsed = (finished[-1] - started[0]).total_seconds()
        infra = step_infra_ms(run_ids)
        return {
            "conversation": "short",
            "workers": 1,
            "worker_class": "ConcurrentWorker (threads)",
            "runs": runs,
            "worker_concurrency": in_flight,
            "model_latency_s": 0,
            "steps": steps,
            "step_infra_ms_p50": round(statistics.median(infra), 2),
            "step_infra_ms_p95": round(percentile(infra, 95), 2),
            "steps_per_s": round(steps / elapsed, 1),
            "worker_cpu_ms_per_step": round(1000 * cpu_s / steps, 2),
            "steps_per_s_while_full": round(
                steps_full / max((full_to - full_from).total_seconds(), 1e-9), 1
            ),
        }

    def inline(*, runs: int):
        """Runs driven one after another in this process (`run_execute`, what a worker's job
        calls), the model in a process of its own: the CPU time of the driving thread per
        step. Python per step with no other thread to wait for, and little disturbed by a
        loaded machine."""
        import django_rq

        from agentops.runtime.loop import run_execute

        model_proc, base = devmodel_start()
        try:
            agent = make_agent(max_concurrent_runs=0)
            agent.endpoint.base_url = f"{base}/v1"
            agent.endpoint.save()
            run_ids, cpu = [], 0.0
            for index in range(-5, runs):  # the first five warm the process up, uncounted
                session = session_create(agent=agent, external_user=f"i{index}")
                run = session_post_message(
                    session=session, content=f'call echo {{"text": "{index}"}}'
                )
                before = time.thread_time()
                run_execute(run_id=run.pk)
                if index >= 0:
                    cpu += time.thread_time() - before
                    run_ids.append(run.pk)
        finally:
            model_proc.stop()
            django_rq.get_queue(settings.RUN_QUEUE).empty()  # their jobs: no worker is to run them
        steps = sum(Run.objects.filter(pk__in=run_ids).values_list("step", flat=True))
        infra = step_infra_ms(run_ids)
        return {
            "conversation": "short",
            "workers": 0,
            "worker_class": "none: run_execute in the bench's own thread",
            "runs": runs,
            "steps": steps,
            "step_infra_ms_p50": round(statistics.median(infra), 2),
            "step_infra_ms_p95": round(percentile(infra, 95), 2),
            "cpu_ms_per_step": round(1000 * cpu / steps, 2),
        }

    scenarios = {
        "inline": lambda: inline(runs=100),
        "forking": lambda: scenario(long=False, workers=1, simple=False, runs=40),
        "simple": lambda: scenario(long=False, workers=1, simple=True, runs=40),
        "long-forking": lambda: scenario(long=True, workers=1, simple=False, runs=20),
        "long-simple": lambda: scenario(long=True, workers=1, simple=True, runs=20),
        "two-forking": lambda: scenario(long=False, workers=2, simple=False, runs=60),
        "two-simple": lambda: scenario(long=False, workers=2, simple=True, runs=60),
        "concurrent-one": lambda: scenario(
            long=False, workers=1, simple=False, runs=40, concurrent=True, concurrency=1
        ),
        "concurrent-40": lambda: scenario(
            long=False, workers=1, simple=False, runs=40, concurrent=True
        ),
        "concurrent-long": lambda: scenario(
            long=True, workers=1, simple=False, runs=20, concurrent=True
        ),
        # make run's shape: many conversations at once, each waiting on a model that thinks.
        "make-run": lambda: scenario(
            long=False, workers=2, simple=False, runs=100, concurrent=True, latency=1
        ),
        "throughput-40": lambda: throughput(in_flight=40, runs=400),
        "throughput-200": lambda: throughput(in_flight=200, runs=1000),
    }
    results = []
    for name in chosen:
        result = scenarios[name]()
        results.append({"scenario": name, **result})
    devmodel.stop()
    print(
        json.dumps(
            {
                "benchmark": "step_overhead",
                "targets": {"p50_ms": 5, "p95_ms": 15, "steps_per_s_at_200": 300},
                "results": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
