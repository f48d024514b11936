"""`make run`: start the whole product, keep it running, and stop what it started on Ctrl-C.

Starts (or reuses) the embedded Postgres and Redis when DATABASE_URL / REDIS_URL are
unset, migrates, seeds the demo, then runs the development model server (when no
OpenAI endpoint is configured), the ASGI web server (WEB_PROCESSES processes behind one port,
one per core by default), WORKER_PROCESSES RQ workers and the RQ scheduler.
A child that exits is started again (with backoff) instead of taking the others down, and
the embedded Redis is started again if it stops answering: Redis is only a queue, and the
scheduler re-enqueues the runs whose jobs it lost.

Stopping is normal, so it is quiet: every child runs in its own process group, so Ctrl-C in
the terminal reaches only this process, which stops each child with one SIGTERM and says one
line per process (a second Ctrl-C while it does so is ignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from agentops.embedded import (
    EmbeddedServiceError,
    postgres_dir,
    redis_answers,
    redis_socket,
    start_postgres,
    start_redis,
    stop_postgres,
    stop_redis,
)

PYTHON = sys.executable
MANAGE = [PYTHON, str(Path(__file__).resolve().parent.parent / "manage.py")]
TICK_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
# A child that ran this long before exiting is restarted at once; quicker deaths back off.
HEALTHY_SECONDS = 60.0
PASSWORD_LINE = re.compile(r"Created admin user '(?P<user>[^']+)' with password: (?P<password>\S+)")


def _say(message: str) -> None:
    print(f"[agentops] {message}", flush=True)


def _wait_ready(url: str, seconds: float) -> bool:
    """Wait until /healthz says every process is up, so the banner comes after their output."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):  # not answering, 503, half-written
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL we built
                if all(service["up"] for service in json.loads(response.read()).values()):
                    return True
        time.sleep(0.2)
    return False


@dataclass
class Child:
    """A process `make run` keeps alive."""

    name: str
    argv: list[str]
    popen: subprocess.Popen | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    restart_at: float | None = None
    restarts: int = 0

    def start(self) -> None:
        self.popen = subprocess.Popen(self.argv, process_group=0)
        self.started_at = time.monotonic()
        self.restart_at = None

    def supervise(self, now: float) -> None:
        """Restart the process once it has exited and its backoff has passed."""
        if self.popen is None or self.popen.poll() is None:
            return
        if self.restart_at is None:
            self._kill_leftovers()
            lived = now - self.started_at
            self.quick_exits = 0 if lived >= HEALTHY_SECONDS else self.quick_exits + 1
            delay = min(2.0 ** max(self.quick_exits - 1, 0), MAX_BACKOFF_SECONDS)
            self.restart_at = now + delay
            _say(
                f"{self.name} exited with code {self.popen.returncode}; "
                f"starting it again in {delay:.0f} s"
            )
        elif now >= self.restart_at:
            self.restarts += 1
            self.start()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()

    def wait(self) -> None:
        if self.popen is None:
            return
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._kill_leftovers()
        _say(f"{self.name} stopped")

    def _kill_leftovers(self) -> None:
        """Kill what is left of the exited child's process group: the processes it started
        itself (the web server's) would otherwise keep the port, or run on unsupervised."""
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def _process_count(name: str, raw: str) -> int:
    raw = raw.strip()
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"{name} must be a whole number, 1 or more, not {raw!r}")
    return int(raw)


def worker_processes() -> int:
    """WORKER_PROCESSES: concurrent worker processes `make run` starts (default 2, one per core
    on a small machine: one process's runs share one core, see bench/concurrency.py)."""
    return _process_count("WORKER_PROCESSES", os.environ.get("WORKER_PROCESSES", "2"))


def web_processes() -> int:
    """WEB_PROCESSES: web server processes `make run` starts behind its one port (default one
    per core, at most 4: one process accepts posts on one core only, see bench/concurrency.py
    --api; more by default would outgrow the embedded Postgres's 100 connections)."""
    cores = str(min(os.cpu_count() or 1, 4))
    return _process_count("WEB_PROCESSES", os.environ.get("WEB_PROCESSES", cores))


def web_command(port: int | str, processes: int) -> list[str]:
    """The ASGI server, as `make run` starts it. With more than one process, uvicorn's
    supervisor shares the socket among them and starts again any of them that dies."""
    web = [PYTHON, "-m", "uvicorn", "agentops.asgi:application", "--host", "127.0.0.1"]
    web += ["--port", str(port), "--log-level", "warning", "--ws", "websockets"]
    if processes > 1:
        web += ["--workers", str(processes)]
    return web


def worker_command() -> list[str]:
    """A concurrent RQ worker on the maintenance and run queues, as `make run` starts it."""
    queues = [settings.MAINTENANCE_QUEUE, settings.RUN_QUEUE]
    worker = [*MANAGE, "rqworker", *queues, "-v", "0"]
    return [*worker, "--worker-class", "agentops.worker.ConcurrentWorker"]


def scheduler_command() -> list[str]:
    return [*MANAGE, "scheduler"]


def _seed_demo() -> tuple[str, str]:
    """Seed the demo; return the admin user and the password if one was created just now."""
    result = subprocess.run(
        [*MANAGE, "seed_demo"], check=True, capture_output=True, text=True, process_group=0
    )
    user, password = "admin", ""
    for line in result.stdout.splitlines():
        match = PASSWORD_LINE.search(line)
        if match:
            user, password = match["user"], match["password"]
        else:
            print(line, flush=True)
    sys.stderr.write(result.stderr)
    return user, password


def _banner(url: str, user: str, password: str) -> str:
    lines = [f"AgentOps is running at {url}", f"user:     {user}"]
    if password:
        lines.append(f"password: {password}   (shown once: keep it, or change it under Account)")
    else:
        lines.append("password: the one printed on the first run")
        lines.append("          (forgot it? python manage.py changepassword " + user + ")")
    lines.append("Ctrl-C stops everything.")
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentops.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("LOG_REQUESTS", "0")
    port = os.environ.get("PORT", "8000")
    processes = worker_processes()
    web_count = web_processes()
    embedded_redis = not os.environ.get("REDIS_URL")
    started_pg = started_redis = False
    children: list[Child] = []
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in background

    def stop_all() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        for child in reversed(children):
            child.wait()
        if started_redis and stop_redis():
            _say("Redis stopped")
        if started_pg and stop_postgres():
            _say("Postgres stopped")

    try:
        try:
            if not os.environ.get("DATABASE_URL"):
                started_pg = not (postgres_dir() / "postmaster.pid").exists()
                os.environ["DATABASE_URL"] = start_postgres()
                _say(f"Postgres (embedded, pgvector) in {postgres_dir()}")
            if embedded_redis:
                started_redis = not redis_socket().exists()
                os.environ["REDIS_URL"] = start_redis()
                _say(f"Redis (embedded) at {redis_socket()}")
        except EmbeddedServiceError as exc:
            _say(f"error: {exc}")
            return 1
        subprocess.run([*MANAGE, "migrate", "--no-input", "-v", "0"], check=True, process_group=0)
        user, password = _seed_demo()
        if not os.environ.get("OPENAI_API_KEY") and not os.environ.get("OPENAI_BASE_URL"):
            devport = os.environ.get("DEVMODEL_PORT", "8765")
            children.append(
                Child(
                    "development model server",
                    [PYTHON, "-m", "agentops.devmodel.server", "--port", devport],
                )
            )
            _say(f"development model server on http://127.0.0.1:{devport}/v1")
        children.append(Child("web server", web_command(port, web_count)))
        worker = worker_command()
        for index in range(processes):
            children.append(Child("worker" if processes == 1 else f"worker {index + 1}", worker))
        children.append(Child("scheduler", scheduler_command()))
        for child in children:
            child.start()
        if _wait_ready(f"http://127.0.0.1:{port}/healthz", 90):
            print(_banner(f"http://127.0.0.1:{port}/", user, password), flush=True)
        else:
            _say("the product was not up within 90 s; see the output above")
        while True:
            time.sleep(TICK_SECONDS)
            if embedded_redis and not redis_answers(redis_socket()):
                _say("the embedded Redis stopped answering; starting it again")
                try:
                    start_redis()
                    started_redis = True
                except EmbeddedServiceError as exc:
                    _say(f"error: {exc}")
            now = time.monotonic()
            for child in children:
                child.supervise(now)
    except KeyboardInterrupt:
        _say("stopping…")
        return 0
    except subprocess.CalledProcessError as exc:
        _say(f"error: {' '.join(map(str, exc.cmd))} failed with exit code {exc.returncode}")
        if exc.stdout:
            print(exc.stdout, flush=True)
        if exc.stderr:
            sys.stderr.write(exc.stderr)
        return 1
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
