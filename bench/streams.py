"""Token streaming with many conversations at once: the time from the model sending a token
to a browser's WebSocket receiving it, with N conversations streaming together. Prints JSON.

N conversations are posted at once to `make run`'s shape of the product (a uvicorn web
server, WORKER_PROCESSES concurrent workers, the scheduler) against the development model
server, which thinks for `--latency` seconds and then streams each answer word by word, each
word replaced by the time it was sent (`{"stamp": true}`). N WebSocket clients, one per
conversation, run in a child process (like browsers, they share no GIL with the server) on
`/ws/sessions/<id>/`. Latency = receive time minus the stamp: it covers the openai client
parsing the stream in the worker, the live sender, Redis pub/sub, the ASGI server and the
socket. Reported: p50/p95/p99/max, tokens received per client, time to done of the runs.

Usage: `python bench/streams.py [--conversations 100] [--latency 2] [--words 30]`
(own data folder var/bench).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

from _setup import devmodel_script, devmodel_start, django_setup, percentile


async def clients_main(urls: list[str], cookie: str, origin: str, expect: int, timeout: float):
    import websockets

    latencies: list[float] = []
    received = [0] * len(urls)
    connected = 0
    ready = asyncio.Event()

    async def client(index: int, url: str) -> None:
        nonlocal connected
        async with websockets.connect(
            url, additional_headers={"Cookie": f"sessionid={cookie}"}, origin=origin
        ) as ws:
            async for raw in ws:
                now = time.time()
                event = json.loads(raw)
                if not ready.is_set() and received[index] == 0 and event.get("kind") != "token":
                    connected += 1  # the snapshot: subscribed
                    if connected == len(urls):
                        ready.set()
                if event.get("kind") != "token":
                    continue
                for word in event.get("text", "").split():
                    try:
                        latencies.append((now - float(word)) * 1000)
                    except ValueError:
                        continue
                    received[index] += 1
                if received[index] >= expect:
                    return

    tasks = [asyncio.create_task(client(i, url)) for i, url in enumerate(urls)]
    await asyncio.wait_for(ready.wait(), 60)
    print("ready", flush=True)
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    print(
        json.dumps(
            {
                "tokens_received": len(latencies),
                "tokens_per_client_min": min(received),
                "p50_ms": round(percentile(latencies, 50), 1),
                "p95_ms": round(percentile(latencies, 95), 1),
                "p99_ms": round(percentile(latencies, 99), 1),
                "max_ms": round(max(latencies), 1) if latencies else None,
            }
        ),
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--latency", type=float, default=2.0, help="model thinking, seconds")
    parser.add_argument("--words", type=int, default=30, help="words per answer")
    parser.add_argument("--word-delay", type=float, default=0.05, help="seconds between words")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    django_setup()
    from django.test import Client

    from agentops.models import FINISHED_RUN_STATUSES, Run
    from agentops.runtime.services import session_create, session_post_message
    from agentops.testing.processes import (
        CONCURRENT_WORKER,
        child_env,
        free_port,
        start_scheduler,
        start_web,
        start_worker,
    )
    from tests.factories import AgentFactory, EndpointFactory, UserFactory

    count = args.conversations
    devmodel, devmodel_base = devmodel_start()
    model = f"bench-{uuid.uuid4().hex[:8]}"
    script = {
        "model": model,
        "latency": args.latency,
        "faults": [{"stream_delay": args.word_delay, "stamp": True}] * count,
    }
    devmodel_script(devmodel_base, script)
    endpoint = EndpointFactory(
        name=model,
        base_url=f"{devmodel_base}/v1",
        default_model=model,
        timeout_seconds=60,
    )
    agent = AgentFactory(slug=model, endpoint=endpoint, memory_enabled=False)
    viewer = UserFactory(username=f"bench-{uuid.uuid4().hex[:8]}", role="viewer")
    browser = Client()
    browser.force_login(viewer)
    cookie = browser.cookies["sessionid"].value
    sessions = [session_create(agent=agent, external_user=f"s-{i}") for i in range(count)]
    # "You said: " and the message's words, each streamed as one stamped word.
    content = " ".join(f"w{i}" for i in range(max(1, args.words - 2)))
    expect = len(f"You said: {content}".split())

    env = child_env(LOG_LEVEL="ERROR", LOG_REQUESTS="0")
    web_port = free_port()
    web = start_web(env, web_port)
    procs = [
        start_worker(env, name=f"bench-streams-{i}", worker_class=CONCURRENT_WORKER)
        for i in range(args.workers)
    ]
    scheduler = start_scheduler(env)
    clients = None
    try:
        urls = [f"ws://127.0.0.1:{web_port}/ws/sessions/{s.pk}/" for s in sessions]
        clients = subprocess.Popen(
            [sys.executable, __file__, "--clients", json.dumps(urls), cookie, str(expect)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "BENCH_ORIGIN": f"http://127.0.0.1:{web_port}"},
        )
        assert clients.stdout is not None
        line = clients.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"the clients did not connect: {line!r}")
        started = time.perf_counter()
        ids = [session_post_message(session=s, content=content).pk for s in sessions]
        deadline = time.monotonic() + 300
        while (
            Run.objects.filter(pk__in=ids).exclude(status__in=FINISHED_RUN_STATUSES).exists()
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        out, _ = clients.communicate(timeout=120)
        streamed = json.loads(out.strip().splitlines()[-1])
        runs = list(Run.objects.filter(pk__in=ids))
        done = [(r.finished_at - r.created_at).total_seconds() for r in runs if r.finished_at]
        statuses: dict[str, int] = {}
        for run in runs:
            statuses[run.status] = statuses.get(run.status, 0) + 1
    finally:
        if clients is not None and clients.poll() is None:
            clients.kill()
            clients.wait(10)
        for proc in [*procs, scheduler, web, devmodel]:
            proc.stop(timeout=30)
    result = {
        "conversations": count,
        "model_latency_s": args.latency,
        "words_per_answer": expect,
        "word_delay_s": args.word_delay,
        "worker_processes": args.workers,
        "statuses": statuses,
        "all_done_in_s": round(elapsed, 2),
        "time_to_done_p95_s": round(percentile(done, 95), 2),
        "emit_to_browser": streamed,
        "tokens_expected": expect * count,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--clients":
        urls, cookie, expect = json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
        asyncio.run(clients_main(urls, cookie, os.environ["BENCH_ORIGIN"], expect, 300))
        sys.exit(0)
    sys.exit(main())
