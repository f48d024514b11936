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

`--api [--runs 100] [--latency 2] [--clients 4] [--agents 1] [--retry 0] [--no-streams]`:
what a user meets. The product runs in `make run`'s shape (agentops/launcher.py's command
lines: WEB_PROCESSES uvicorn processes on 127.0.0.1, WORKER_PROCESSES concurrent workers,
the scheduler) against the development model server. Each of `--clients` client processes
(spawned, asyncio, a plain HTTP/1.1 client that costs the shared cores little) opens the
event stream of each of its sessions (`GET /api/sessions/{id}/events`, with its own API key)
and reads the `state` event; once all listen, every client posts one message to each of its
sessions at one named moment (`POST /api/sessions/{id}/messages`, a connection each).
Reported apart: the time until each post is answered (202, or 503 with Retry-After: counted,
never a 500) from its own send, and the time until its run's finished `run.status` arrives
on the stream (and its first `running`); peak RSS of every product process (the web server
and each of its processes, each worker with its children, the scheduler) and in total; the
CPU seconds the product, Postgres, Redis and the clients spent during the burst; the load
average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from _setup import (
    devmodel_script,
    devmodel_start,
    django_setup,
    percentile,
    product_start,
)

FORKING = "agentops.worker.Worker"
CONCURRENT = "agentops.worker.ConcurrentWorker"


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children, the live ones included (0 when gone)."""
    import psutil

    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        process = psutil.Process(pid)
        times = process.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = child.cpu_times()
                total += times.user + times.system
    return total


def services_pids() -> dict[str, int]:
    """The embedded Postgres and Redis this bench uses (their first process), when found."""
    from agentops.embedded import postgres_dir, redis_dir

    pids = {}
    for name, path in (
        ("postgres", postgres_dir() / "postmaster.pid"),
        ("redis", redis_dir() / "redis.pid"),
    ):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids[name] = int(path.read_text().split()[0])
    return pids


class RssSampler(threading.Thread):
    """Samples the resident memory of processes (and their children) every 0.2 s."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak: dict[int, int] = dict.fromkeys(pids, 0)
        self.peak_total = 0
        self.child_peak: dict[int, int] = {}  # each child's own peak, by its pid
        self.cpu: dict[int, float] = dict.fromkeys(pids, 0.0)
        self.stopped = threading.Event()

    def cpu_now(self) -> dict[int, float]:
        """CPU seconds of each process with its children, the live ones included."""
        return {pid: tree_cpu(pid) for pid in self.pids}

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
                        with contextlib.suppress(psutil.NoSuchProcess):
                            own = child.memory_info().rss
                            rss += own
                            self.child_peak[child.pid] = max(self.child_peak.get(child.pid, 0), own)
                except psutil.NoSuchProcess:
                    continue
                self.peak[pid] = max(self.peak[pid], rss)
                self.cpu[pid] = cpu
                total += rss
            self.peak_total = max(self.peak_total, total)


# --- --api: through the front door ------------------------------------------------------------

FINISHED = {"handed_off", "succeeded", "failed", "cancelled"}


@dataclass
class Post:
    """One client's post and what it saw of it."""

    session: str
    status: str = ""  # the last answer's HTTP status, or the exception's class
    unavailable: int = 0  # 503 answers (then retried after Retry-After with --retry)
    unavailable_without_retry_after: int = 0
    run: str | None = None
    stream_error: str | None = None
    sent_at: float = 0.0  # time.time() just before connecting (the first time)
    accepted_s: float | None = None
    started_s: float | None = None  # its first `running` on the session's stream
    done_s: float | None = None  # the run's finished `run.status` on the session's stream
    run_status: str | None = None


async def _http_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status = int((await reader.readline()).split()[1])
    headers = {}
    while line := (await reader.readline()).strip():
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def _http_request(method: str, url: str, key: str, body: bytes = b"") -> bytes:
    host = urllib.parse.urlsplit(url).netloc
    head = [f"{method} {urllib.parse.urlsplit(url).path} HTTP/1.1", f"Host: {host}"]
    head += [f"Authorization: Bearer {key}", "Connection: close"]
    if body:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _sse_lines(reader: asyncio.StreamReader, chunked: bool) -> AsyncIterator[str]:
    """The lines of an event stream's body (chunked, as uvicorn sends it, or not)."""
    buffer = b""
    while True:
        if chunked:
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                return
            data = await reader.readexactly(size + 2)
            buffer += data[:-2]
        else:
            data = await reader.read(65536)
            if not data:
                return
            buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.decode().rstrip("\r")


async def _api_client(
    url: str,
    key: str,
    sessions: list[str],
    ready: mp.Queue[int],
    start_at: mp.Queue[float],
    timeout: float,
    retries: int,
    streams: bool = True,
) -> tuple[list[Post], float]:
    """Listens on each session's event stream, then posts one message to each at the moment
    the bench names, and waits for every answer (or the timeout)."""
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    posts = {session: Post(session) for session in sessions}
    subscribed = {session: asyncio.Event() for session in sessions}
    answered = {session: asyncio.Event() for session in sessions}

    async def listen(session: str) -> None:
        post = posts[session]
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(_http_request("GET", f"{url}/api/sessions/{session}/events", key))
            status, headers = await _http_head(reader)
            if status != 200:
                post.stream_error = str(status)
                return
            event = ""
            chunked = headers.get("transfer-encoding") == "chunked"
            async for line in _sse_lines(reader, chunked):
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "state":
                    subscribed[session].set()
                elif line.startswith("data: ") and event == "run.status":
                    data = json.loads(line[6:])
                    if data["status"] == "running" and post.started_s is None and post.sent_at:
                        post.started_s = time.time() - post.sent_at
                    if data["status"] in FINISHED:
                        post.done_s = time.time() - post.sent_at if post.sent_at else None
                        post.run_status = data["status"]
                        post.run = post.run or data["run_id"]
                        break
            writer.close()
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            post.stream_error = type(exc).__name__
        finally:
            subscribed[session].set()
            answered[session].set()

    async def send(session: str) -> None:
        post = posts[session]
        body = json.dumps({"content": "hello"}).encode()
        post.sent_at = time.time()
        path = f"{url}/api/sessions/{session}/messages"
        try:
            for attempt in range(retries + 1):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(_http_request("POST", path, key, body))
                status, headers = await _http_head(reader)
                answer = await reader.read()
                writer.close()
                post.accepted_s = time.time() - post.sent_at
                post.status = str(status)
                if status != 503:
                    break
                post.unavailable += 1
                retry_after = headers.get("retry-after", "")
                if not retry_after.isdigit():
                    post.unavailable_without_retry_after += 1
                    break
                if attempt < retries:
                    await asyncio.sleep(int(retry_after))
            if post.status == "202" and streams:
                post.run = json.loads(answer)["run"]
            else:
                answered[session].set()  # no run: nothing to wait for
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            post.status = type(exc).__name__
            answered[session].set()

    listeners = [asyncio.ensure_future(listen(session)) for session in sessions if streams]
    await asyncio.gather(*(event.wait() for event in subscribed.values() if streams))
    ready.put(len(sessions))
    moment = await asyncio.get_running_loop().run_in_executor(None, start_at.get)
    await asyncio.sleep(max(0.0, moment - time.time()))
    cpu = os.times()
    await asyncio.gather(*(send(session) for session in sessions))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(event.wait() for event in answered.values()))
    for listener in listeners:
        listener.cancel()
    cpu_used = os.times().user + os.times().system - cpu.user - cpu.system
    return list(posts.values()), cpu_used


def api_client_process(
    url: str,
    key: str,
    sessions: list[str],
    queues: tuple[mp.Queue[int], mp.Queue[float], mp.Queue[dict[str, Any]]],
    timeout: float,
    retries: int,
    streams: bool,
) -> None:
    """A client process (spawned: no Django, no GIL shared with the bench or the product)."""
    ready, start_at, results = queues
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    posts, cpu = asyncio.run(
        _api_client(url, key, sessions, ready, start_at, timeout, retries, streams)
    )
    results.put({"posts": [post.__dict__ for post in posts], "cpu_s": cpu})


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "max": round(max(values), 3),
    }


def api_main(args: argparse.Namespace) -> dict[str, Any]:
    """`--api`: N posts at once from client processes, through HTTP, to `make run`'s shape."""
    load_before = os.getloadavg()
    django_setup()
    from agentops.auth import api_key_create
    from agentops.models import FINISHED_RUN_STATUSES, Run
    from agentops.runtime.services import session_create
    from agentops.testing.processes import child_env
    from tests.factories import AgentFactory, EndpointFactory, UserFactory

    devmodel, devmodel_base = devmodel_start()
    model = f"bench-{uuid.uuid4().hex[:8]}"
    devmodel_script(devmodel_base, {"model": model, "latency": args.latency})
    endpoint = EndpointFactory(
        name=model, base_url=f"{devmodel_base}/v1", default_model=model, timeout_seconds=60
    )
    agents: list[Any] = [
        AgentFactory(
            slug=f"{model}-{i}",
            endpoint=endpoint,
            memory_enabled=False,
            max_concurrent_runs=args.agent_limit,
        )
        for i in range(max(1, args.agents))
    ]
    agent = agents[0]
    sessions = [
        str(session_create(agent=agents[i % len(agents)], external_user=f"api-{i}").pk)
        for i in range(args.runs)
    ]
    clients = max(1, min(args.clients, args.runs))
    keys = [
        api_key_create(user=UserFactory(username=f"{model}-{i}", role="operator"), name=model)[1]
        for i in range(clients)
    ]
    # make run's settings and logging (this process uses the test settings for its factories).
    env = child_env(LOG_LEVEL="ERROR", LOG_REQUESTS="0", DJANGO_SETTINGS_MODULE="agentops.settings")
    product = product_start(env, name="bench-api")
    # A make run that has been up a while: every web process has served the API and a post,
    # and the warm-up's runs are done.
    product.warm([f"/api/sessions/{sessions[0]}"], keys[0])
    warm = [str(session_create(agent=agent, external_user=f"warm-{i}").pk) for i in range(64)]
    product.warm([f"/api/sessions/{s}/messages" for s in warm], keys[0], {"content": "hi"})
    deadline = time.monotonic() + 120
    unfinished = Run.objects.filter(session_id__in=warm).exclude(status__in=FINISHED_RUN_STATUSES)
    while unfinished.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    sampler = RssSampler([proc.pid for proc in product.procs])
    sampler.start()
    context = mp.get_context("spawn")
    ready: mp.Queue[int] = context.Queue()
    results: mp.Queue[dict[str, Any]] = context.Queue()
    starts: list[mp.Queue[float]] = [context.Queue() for _ in range(clients)]
    timeout = args.timeout or max(120.0, 3 * args.latency * math.ceil(args.runs / 100))
    processes = [
        context.Process(
            target=api_client_process,
            args=(
                product.url,
                keys[i],
                sessions[i::clients],
                (ready, starts[i], results),
                timeout,
                args.retry,
                not args.no_streams,
            ),
            daemon=True,
        )
        for i in range(clients)
    ]
    posts: list[dict[str, Any]] = []
    try:
        for process in processes:
            process.start()
        listening = 0
        while listening < len(sessions):  # every stream open, its `state` read
            listening += ready.get(timeout=120)
        load_burst = os.getloadavg()
        cpu_before = sampler.cpu_now()
        web_pids = product.web_children()
        web_before = {pid: tree_cpu(pid) for pid in web_pids}
        services = services_pids()
        services_before = {name: tree_cpu(pid) for name, pid in services.items()}
        moment = time.time() + 0.5
        for start in starts:
            start.put(moment)
        client_cpu = 0.0
        for _ in processes:
            result = results.get(timeout=timeout + 60 * (args.retry + 2))
            posts += result["posts"]
            client_cpu += result["cpu_s"]
        cpu_used = {
            pid: seconds - cpu_before.get(pid, 0.0) for pid, seconds in sampler.cpu_now().items()
        }
        web_used = [tree_cpu(pid) - web_before[pid] for pid in web_pids]
        services_used = {
            name: tree_cpu(pid) - services_before[name] for name, pid in services.items()
        }
        for process in processes:
            process.join(30)
        deadline = time.monotonic() + timeout  # without streams, the clients did not wait
        unfinished = Run.objects.filter(session_id__in=sessions).exclude(
            status__in=FINISHED_RUN_STATUSES
        )
        while unfinished.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        load_after = os.getloadavg()
        runs = Counter(Run.objects.filter(session_id__in=sessions).values_list("status", flat=True))
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        sampler.stopped.set()
        sampler.join()
        web_children = product.web_children()
        product.stop()
        devmodel.stop()

    statuses = Counter(post["status"] for post in posts)
    web, workers, scheduler = product.web, product.workers, product.scheduler
    web_cpu = cpu_used.get(web.pid, 0.0)
    return {
        "mode": "api",
        "conversations": args.runs,
        "model_latency_s": args.latency,
        "web_processes": product.web_processes,
        "worker_processes": len(workers),
        "worker_concurrency": settings_value("WORKER_CONCURRENCY"),
        "agent_limit": settings_value("AGENT_MAX_CONCURRENT_RUNS")
        if args.agent_limit is None
        else args.agent_limit,
        "agents": len(agents),
        "client_processes": clients,
        "streams": not args.no_streams,
        "posts_sent_within_s": round(
            max(p["sent_at"] for p in posts) - min(p["sent_at"] for p in posts), 3
        )
        if posts
        else None,
        "accepted": {
            "statuses": dict(statuses),
            "retries_after_503": args.retry,
            "503_answers": sum(p["unavailable"] for p in posts),
            "503_without_retry_after": sum(p["unavailable_without_retry_after"] for p in posts),
            "seconds": _spread([p["accepted_s"] for p in posts if p["accepted_s"] is not None]),
            "seconds_202": _spread([p["accepted_s"] for p in posts if p["status"] == "202"]),
        },
        "answered_on_sse": {
            "answers": sum(1 for p in posts if p["done_s"] is not None),
            "run_statuses": dict(Counter(p["run_status"] for p in posts if p["run_status"])),
            "stream_errors": dict(Counter(p["stream_error"] for p in posts if p["stream_error"])),
            "seconds": _spread([p["done_s"] for p in posts if p["done_s"] is not None]),
            "running_seconds": _spread(
                [p["started_s"] for p in posts if p["started_s"] is not None]
            ),
        },
        "runs_in_db": dict(runs),
        "peak_rss_mb": {
            "web_server": round(sampler.peak[web.pid] / 2**20),
            "web_processes": [round(sampler.child_peak.get(pid, 0) / 2**20) for pid in web_children]
            if product.web_processes > 1
            else [round(sampler.peak[web.pid] / 2**20)],
            "workers": [round(sampler.peak[w.pid] / 2**20) for w in workers],
            "scheduler": round(sampler.peak[scheduler.pid] / 2**20),
            "total": round(sampler.peak_total / 2**20),
        },
        "cpu_s_during_burst": {
            "web_server": round(web_cpu, 2),
            "web_processes": [round(seconds, 2) for seconds in web_used],
            "web_ms_per_conversation": round(1000 * web_cpu / max(len(posts), 1), 1),
            "workers": round(sum(cpu_used.get(w.pid, 0.0) for w in workers), 2),
            "scheduler": round(cpu_used.get(scheduler.pid, 0.0), 2),
            **{name: round(seconds, 2) for name, seconds in services_used.items()},
            "clients": round(client_cpu, 2),
        },
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "at_burst": [round(x, 2) for x in load_burst],
            "after": [round(x, 2) for x in load_after],
        },
        "cpus": os.cpu_count(),
    }


def settings_value(name: str) -> Any:
    from django.conf import settings

    return getattr(settings, name)


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
    parser.add_argument("--api", action="store_true", help="through HTTP, `make run`'s shape")
    parser.add_argument("--runs", type=int, default=100, help="conversations posted (--api)")
    parser.add_argument("--latency", type=float, default=2.0, help="model seconds (--api)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (--api)")
    parser.add_argument("--agents", type=int, default=1, help="sessions spread on (--api)")
    parser.add_argument("--agent-limit", type=int, default=None, help="each agent's (--api)")
    parser.add_argument("--timeout", type=float, default=0, help="seconds to wait (--api)")
    parser.add_argument(
        "--retry", type=int, default=0, help="times a post answered 503 is sent again (--api)"
    )
    parser.add_argument(
        "--no-streams", action="store_true", help="post without listening first (--api)"
    )
    args = parser.parse_args()
    if args.api:
        print(json.dumps(api_main(args), indent=2, default=str))
        return 0
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
