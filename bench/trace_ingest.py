"""Trace ingest: sustained spans/s written through the Tracer (batched flushes), and the
latency from emitting a span to a WebSocket client receiving it, with 1 and 20 clients
connected to a real uvicorn server at 500 spans/s. Prints JSON.

The emitter runs here; the WebSocket clients run in a child process (like browsers, they
do not share this process's CPU time slices or GIL). Latency = client receive time minus
the span's emit time (both `time.time()` on this machine), so it includes the batching
wait before a flush (`flush_every_ms`), the INSERT and commit, Redis pub/sub, the ASGI
server and the socket.

Uses its own data folder (AGENTOPS_VAR_DIR, default var/bench).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from _setup import django_setup, percentile

# --- the clients (child process) --------------------------------------------------------------


async def clients_main(
    url: str, cookie: str, origin: str, count: int, expect: int, timeout: float
) -> None:
    import websockets

    latencies: list[list[float]] = [[] for _ in range(count)]
    seen: list[set[int]] = [set() for _ in range(count)]
    messages = [0] * count
    ready = asyncio.Event()
    connected = 0

    async def client(index: int) -> None:
        nonlocal connected
        headers = {"Cookie": f"sessionid={cookie}"}
        async with websockets.connect(
            url, additional_headers=headers, origin=origin, max_queue=None
        ) as ws:
            async for raw in ws:
                now = time.time()
                message = json.loads(raw)
                if message.get("kind") == "replay.done":
                    connected += 1
                    if connected == count:
                        ready.set()
                    continue
                if message.get("kind") != "spans":
                    continue
                messages[index] += 1
                for span in message["spans"]:
                    emitted = span["attributes"].get("t")
                    if emitted is None or message.get("replay"):
                        continue
                    latencies[index].append((now - emitted) * 1000)
                    seen[index].add(span["seq"])
                if len(seen[index]) >= expect:
                    return

    tasks = [asyncio.create_task(client(i)) for i in range(count)]
    await asyncio.wait_for(ready.wait(), 30)
    print("ready", flush=True)
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    for task in done:
        task.result()
    everything = [v for per in latencies for v in per]
    print(
        json.dumps(
            {
                "received_per_client_min": min(len(s) for s in seen),
                "messages_per_client_mean": round(statistics.mean(messages), 1),
                "p50_ms": round(percentile(everything, 50), 2),
                "p95_ms": round(percentile(everything, 95), 2),
                "p99_ms": round(percentile(everything, 99), 2),
                "max_ms": round(max(everything), 2) if everything else None,
            }
        ),
        flush=True,
    )


# --- the emitter (this process) --------------------------------------------------------------


def sustained_write(seconds: float, batch: int) -> dict:
    from tracing.emit import Tracer
    from tracing.platform.live import wait_sent

    trace = uuid.uuid4()
    tracer = Tracer(trace, agent="bench")
    written = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(batch):
            with tracer.span("tool.call", **{"gen_ai.tool.name": "echo", "i": i}):
                pass
        tracer.flush_now()
        written += batch
    wait_sent(30)
    elapsed = time.perf_counter() - start
    return {
        "batch": batch,
        "spans": written,
        "seconds": round(elapsed, 2),
        "spans_per_s": round(written / elapsed),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency_run(
    *,
    clients: int,
    rate: int,
    seconds: float,
    flush_every_ms: float,
    port: int,
    cookie: str,
    run_id: uuid.UUID,
    web_pid: int,
) -> dict:
    from tracing.emit import Tracer
    from tracing.platform.live import wait_sent

    total = int(rate * seconds)
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--clients",
            str(clients),
            "--url",
            f"ws://127.0.0.1:{port}/ws/runs/{run_id}/",
            "--cookie",
            cookie,
            "--origin",
            f"http://127.0.0.1:{port}",
            "--expect",
            str(total),
            "--timeout",
            str(seconds + 60),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"clients did not connect: {line!r}")
        tracer = Tracer(run_id, agent="bench")
        cpu_web, cpu_clients, wall = (
            cpu_seconds(web_pid),
            cpu_seconds(child.pid),
            time.perf_counter(),
        )
        per_flush = max(1, round(rate * flush_every_ms / 1000))
        interval = per_flush / rate
        start = time.perf_counter()
        emitted = 0
        lag = 0.0
        while emitted < total:
            due = start + emitted / rate
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            else:
                lag = max(lag, now - due)
            for i in range(min(per_flush, total - emitted)):
                with tracer.span("tool.call", t=time.time(), i=emitted + i):
                    pass
            emitted += min(per_flush, total - emitted)
            tracer.flush_now()
        wait_sent(30)
        cpu_web, cpu_clients = cpu_seconds(web_pid) - cpu_web, cpu_seconds(child.pid) - cpu_clients
        wall = time.perf_counter() - wall
        out, _ = child.communicate(timeout=seconds + 90)
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    return {
        "clients": clients,
        "rate_per_s": rate,
        "spans": total,
        "flush_every_ms": flush_every_ms,
        "spans_per_flush": per_flush,
        "interval_s": round(interval, 4),
        "emitter_max_lag_ms": round(lag * 1000, 1),
        "missing_per_client": total - result["received_per_client_min"],
        "cpu_share_web": round(cpu_web / wall, 2),
        "cpu_share_clients": round(cpu_clients / wall, 2),
        **result,
    }


def main() -> int:

    django_setup()
    from django.test import Client

    from agentops.models import Run
    from agentops.testing.processes import free_port, start_web
    from tests.factories import AgentFactory, EndpointFactory, SessionFactory, UserFactory

    results: dict = {"machine": {"cpus": os.cpu_count()}}
    results["write"] = (
        [] if os.environ.get("SKIP_WRITE") else [sustained_write(6.0, 50), sustained_write(4.0, 10)]
    )

    viewer = UserFactory(username=f"bench-{uuid.uuid4().hex[:8]}", role="viewer")
    client = Client()
    client.force_login(viewer)
    cookie = client.cookies["sessionid"].value
    port = free_port()
    web = start_web(dict(os.environ), port)
    try:
        latencies = []
        tag = uuid.uuid4().hex[:8]
        agent = AgentFactory(slug=f"bench-{tag}", endpoint=EndpointFactory(name=f"bench-{tag}"))
        for clients in (1, 20):
            session = SessionFactory(agent=agent)
            run = Run.objects.create(session=session, agent=session.agent, status="running")
            latencies.append(
                latency_run(
                    clients=clients,
                    rate=500,
                    seconds=10,
                    flush_every_ms=10,
                    port=port,
                    cookie=cookie,
                    run_id=run.pk,
                    web_pid=web.pid,
                )
            )
        results["emit_to_browser"] = latencies
    finally:
        web.stop()
    best_write = max((w["spans_per_s"] for w in results["write"]), default=0)
    results["targets"] = {
        "sustained_spans_per_s >= 2000": best_write >= 2000,
        "p95_emit_to_browser_ms < 50 at 500/s": all(
            r["p95_ms"] < 50 for r in results["emit_to_browser"]
        ),
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    if "--clients" in sys.argv:
        parser = argparse.ArgumentParser()
        parser.add_argument("--clients", type=int)
        parser.add_argument("--url")
        parser.add_argument("--cookie")
        parser.add_argument("--origin")
        parser.add_argument("--expect", type=int)
        parser.add_argument("--timeout", type=float)
        args = parser.parse_args()
        asyncio.run(
            clients_main(
                args.url, args.cookie, args.origin, args.clients, args.expect, args.timeout
            )
        )
    else:
        sys.exit(main())
