"""Shared setup for benchmarks: their own data folder (var/bench), migrated, Django ready."""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentops.testing.processes import Proc

ROOT = Path(__file__).resolve().parent.parent


def django_setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.setdefault("AGENTOPS_VAR_DIR", str(ROOT / "var" / "bench"))
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentops.testing.settings")
    from agentops.embedded import ensure_services, stop_services

    atexit.register(stop_services, ensure_services())
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-th percentile; NaN when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def devmodel_start() -> tuple[Proc, str]:
    """The project's dev model server in a process of its own, answering; and its address."""
    from agentops.testing.processes import Proc, free_port, wait_http

    base = f"http://127.0.0.1:{free_port()}"
    proc = Proc(
        [sys.executable, "-m", "agentops.devmodel.server", "--port", base.rsplit(":", 1)[1]],
        dict(os.environ),
        "bench-devmodel",
    )
    wait_http(f"{base}/healthz")
    return proc, base


def devmodel_script(base: str, script: dict[str, Any]) -> None:
    """Tells the dev model server at `base` how to answer a model (latency, faults)."""
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{base}/_control/script",
        data=json.dumps(script).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).read()  # noqa: S310 - loopback only


@dataclass
class Product:
    """The product in `make run`'s shape, started by `product_start`."""

    web: Proc
    workers: list[Proc]
    scheduler: Proc
    url: str
    web_processes: int

    @property
    def procs(self) -> list[Proc]:
        return [self.web, *self.workers, self.scheduler]

    def web_children(self) -> list[int]:
        """The web server's processes when uvicorn supervises several, else the server itself."""
        import psutil

        if self.web_processes == 1:
            return [self.web.pid]
        children = psutil.Process(self.web.pid).children()
        return [c.pid for c in children if "spawn_main" in " ".join(c.cmdline())]

    def warm(self, paths: list[str], key: str, body: dict[str, Any] | None = None) -> None:
        """Sends the API key's requests (GET, or POST `body`) to `paths` in turn, 16 at a
        time, until every web process has spent a third of a CPU second on them: a process's
        first API request, and its first post, load what they use (half a second each)."""
        from concurrent.futures import ThreadPoolExecutor

        import psutil

        def cpu(pid: int) -> float:
            times = psutil.Process(pid).cpu_times()
            return times.user + times.system

        def send(path: str) -> None:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            request = urllib.request.Request(self.url + path, data, headers)  # noqa: S310
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                response.read()

        pids = self.web_children()
        before = {pid: cpu(pid) for pid in pids}
        with ThreadPoolExecutor(16) as pool:
            for start in range(0, 50 * 16, 16):
                batch = [paths[i % len(paths)] for i in range(start, start + 16)]
                if body is not None and start + 16 > len(paths):
                    break  # a path is posted to once
                list(pool.map(send, batch))
                if all(cpu(pid) - before[pid] >= 0.33 for pid in pids):
                    return
        print("warning: a web process took none of the warm-up requests", file=sys.stderr)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=30)


def product_start(env: dict[str, str], *, name: str = "bench") -> Product:
    """The web server (WEB_PROCESSES processes behind one port), WORKER_PROCESSES concurrent
    workers and the scheduler, with `make run`'s command lines (agentops/launcher.py) and the
    same settings, once every web process has started its application and every worker
    listens. The web server logs at info with no access log, to tell when each process is up."""
    import django_rq
    from rq import Worker as RQWorker

    from agentops.launcher import (
        scheduler_command,
        web_command,
        web_processes,
        worker_command,
        worker_processes,
    )
    from agentops.testing.processes import Proc, free_port, wait_http

    port = free_port()
    count = web_processes()
    web_argv = web_command(port, count)
    web_argv[web_argv.index("--log-level") + 1] = "info"
    web = Proc([*web_argv, "--no-access-log"], env, f"{name}-web")
    names = [f"{name}-worker-{index}-{time.time_ns()}" for index in range(worker_processes())]
    workers = [
        Proc([*worker_command(), "--name", worker], env, worker, done_line="unsubscribing")
        for worker in names
    ]
    product = Product(web, workers, Proc(scheduler_command(), env, f"{name}-scheduler"), "", count)
    product.url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{product.url}/healthz", 120)
        deadline = time.monotonic() + 120
        connection = django_rq.get_connection("runs")
        while web.output().count("Application startup complete") < count or set(names) - {
            w.name for w in RQWorker.all(connection=connection)
        }:
            if time.monotonic() > deadline or not all(p.alive() for p in product.procs):
                raise RuntimeError(f"the product did not start; see {web.log_path.parent}")
            time.sleep(0.1)
    except BaseException:
        product.stop()
        raise
    return product
