"""Real processes for the test suite and benchmarks: web server, workers, dev model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from django.conf import settings
from django.db import connection

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_for_current_db() -> str:
    """DATABASE_URL pointing at the database this process uses now (the test database)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for_current_db()
    env.update(extra)
    return env


def python_run(
    args: list[str], *, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python <args>` in the project folder, to its end: its exit code and its output as text."""
    return subprocess.run(
        [PYTHON, *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )


def postgres_end_backends(*, application_name: str | None = None) -> None:
    """End the backends of processes that connect as `application_name` (PGAPPNAME in their
    environment), or, without one, every other backend of this database."""
    query = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    with connection.cursor() as cursor:
        if application_name is None:
            cursor.execute(query)
        else:
            cursor.execute(query + " AND application_name = %s", [application_name])


@contextmanager
def postgres_full() -> Iterator[int]:
    """Hold every connection Postgres has left, so that no one else connects until the block
    ends. Yields how many it holds."""
    url = database_url_for_current_db()
    held: list[psycopg.Connection] = []
    try:
        while True:
            try:
                held.append(psycopg.connect(url, autocommit=True))
            except psycopg.OperationalError as exc:
                if "too many clients" not in str(exc):
                    raise
                break
        yield len(held)
    finally:
        for held_connection in held:
            held_connection.close()


def wait_http(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback only
                return
        except Exception as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {seconds} s: {last}")


class Proc:
    """A child process we started; stopped by pid, never by name."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        name: str,
        new_group: bool = True,
        done_line: str = "",
    ) -> None:
        self.name = name
        self.done_line = done_line.encode()
        self.log_path = (
            Path(os.environ["AGENTOPS_VAR_DIR"]) / "logs" / f"{name}-{time.time_ns()}.log"
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            args,
            env=env,
            cwd=PROJECT_DIR,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=new_group,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL to the group if it has not exited within `timeout` seconds, or
        half a second after its log's last line holds `done_line` (it has nothing left to do)."""
        if self.alive():
            self.popen.terminate()
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                if self.done_line and self.done_line in self._last_line():
                    deadline = min(deadline, time.monotonic() + 0.5)
                time.sleep(0.05)
            if self.alive():
                self.kill_group()
        self.log.close()

    def _last_line(self) -> bytes:
        self.log.flush()
        with self.log_path.open("rb") as log:
            log.seek(max(log.seek(0, os.SEEK_END) - 4096, 0))
            return log.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]

    def kill_group(self, sig: int = 9) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass
        self.popen.wait(10)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")


FORKING_WORKER = "agentops.worker.Worker"
CONCURRENT_WORKER = "agentops.worker.ConcurrentWorker"


def start_worker(
    env: dict[str, str],
    *,
    name: str = "worker",
    simple: bool = False,
    worker_class: str = FORKING_WORKER,
    queues: tuple[str, ...] | None = None,
) -> Proc:
    """A worker on `queues` (by default the maintenance and run queues, as deployed)."""
    args = [
        PYTHON,
        "manage.py",
        "rqworker",
        *(queues or (settings.MAINTENANCE_QUEUE, settings.RUN_QUEUE)),
        "--name",
        f"{name}-{time.time_ns()}",
    ]
    args += ["--worker-class", "rq.worker.SimpleWorker" if simple else worker_class]
    # RQ's teardown ends with this line; what may follow is redis-py's join of the pub/sub
    # thread, which (rq 3.0 with redis 8.2) can wait out that thread's 60 s poll.
    return Proc(args, env, name, done_line="unsubscribing from channel")


def start_web(env: dict[str, str], port: int) -> Proc:
    proc = Proc(
        [
            PYTHON,
            "-m",
            "uvicorn",
            "agentops.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--ws",
            "websockets",
        ],
        env,
        f"web-{port}",
    )
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc


def start_scheduler(env: dict[str, str]) -> Proc:
    return Proc([PYTHON, "manage.py", "scheduler"], env, "scheduler")


class DevModel:
    """The development model server, in a thread of this process, on a free port."""

    def __init__(self) -> None:
        from agentops.devmodel.server import serve

        self.server = serve("127.0.0.1", 0)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def script(self, model: str, faults: list[dict] | None = None, **options: object) -> None:
        import json

        body = json.dumps({"model": model, "faults": faults or [], **options}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/_control/script",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).read()  # noqa: S310 - loopback only

    def requests(self, model: str) -> list[dict]:
        import json

        url = f"http://127.0.0.1:{self.port}/_control/requests?model={model}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())["requests"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
