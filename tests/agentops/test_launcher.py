"""`make run` keeps the product up: a child that dies is started again, the embedded Redis too,
and Ctrl-C stops everything it started, quietly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable

import psutil
import pytest

from agentops import embedded
from agentops.testing.processes import PROJECT_DIR, free_port, python_run
from tests.kit import T, until


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    return until(predicate, seconds=timeout, every=0.2, message=what)


def child_pids(launcher: subprocess.Popen, marker: str) -> set[int]:
    pids = set()
    for child in psutil.Process(launcher.pid).children():
        try:
            if marker in " ".join(child.cmdline()):
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


def web_servers(launcher: subprocess.Popen) -> tuple[int, set[int]]:
    """The uvicorn supervisor `make run` started and the web processes it serves with."""
    supervisor = next(iter(child_pids(launcher, "uvicorn")), 0)
    if not supervisor:
        return 0, set()
    try:
        children = psutil.Process(supervisor).children()
        return supervisor, {c.pid for c in children if "spawn_main" in " ".join(c.cmdline())}
    except psutil.NoSuchProcess:
        return 0, set()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_it_restarts_what_dies_and_stops_what_it_started(services_folder, tmp_path):
    folder = services_folder
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"AGENTOPS_VAR_DIR": str(folder), "PORT": str(port), "DEVMODEL_PORT": str(free_port())}
    env |= {"WEB_PROCESSES": "2"}
    output = tmp_path / "out.log"
    with output.open("wb") as sink:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "agentops.launcher"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as in a terminal
        )
    try:
        wait_until(lambda: "AgentOps is running at" in output.read_text(), 180, "the banner")
        text = output.read_text()
        banner = text[text.index("AgentOps is running at") :]
        assert f"http://127.0.0.1:{port}/" in banner and "user:     admin" in banner
        assert "password: " in banner and "shown once" in banner
        # The password is in the box only, not also in the lines above it.
        password = banner.split("password: ", 1)[1].split()[0]
        assert text.count(password) == 1

        # Two web processes behind the port; one that dies is replaced, and so are both when
        # their supervisor dies (its orphans would keep the port from the new one).
        def serving(count: int, other_than: set[int]) -> tuple[int, set[int]] | None:
            supervisor, servers = web_servers(launcher)
            return (supervisor, servers) if len(servers - other_than) == count else None

        supervisor, servers = wait_until(lambda: serving(2, set()), 60, "two web processes")
        os.kill(next(iter(servers)), signal.SIGKILL)
        _, replaced = wait_until(lambda: serving(1, servers), 30, "a web process started again")
        os.kill(supervisor, signal.SIGKILL)
        wait_until(lambda: not any(psutil.pid_exists(pid) for pid in replaced), 30, "orphans gone")
        wait_until(
            lambda: web_servers(launcher)[0] not in (0, supervisor) and serving(2, replaced),
            60,
            "the web server started again, with two processes",
        )

        worker = wait_until(
            lambda: len(child_pids(launcher, "ConcurrentWorker")) == 2, 30, "two workers"
        ) and child_pids(launcher, "rqworker")
        os.kill(next(iter(worker)), signal.SIGKILL)
        wait_until(lambda: child_pids(launcher, "rqworker") - worker, 30, "a worker started again")

        os.kill(int((embedded.redis_dir() / "redis.pid").read_text()), signal.SIGKILL)
        wait_until(lambda: not embedded.redis_answers(embedded.redis_socket()), 10, "Redis gone")
        wait_until(
            lambda: embedded.redis_answers(embedded.redis_socket()), 30, "Redis started again"
        )

        def healthy() -> bool:
            url = f"http://127.0.0.1:{port}/healthz"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    health = json.loads(response.read())
            except Exception:
                return False
            return health["redis"]["up"] and health["worker"]["up"]

        wait_until(healthy, 60, "healthz says Redis and a worker are up")
        assert launcher.poll() is None
        children = psutil.Process(launcher.pid).children(recursive=True)
        before = len(output.read_bytes())
        os.killpg(launcher.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        wait_until(lambda: "stopping" in output.read_bytes()[before:].decode(), 30, "stopping")
        os.killpg(launcher.pid, signal.SIGINT)  # an impatient second Ctrl-C changes nothing
        assert launcher.wait(timeout=60) == 0
        stopping = output.read_bytes()[before:].decode()
        assert "Traceback" not in stopping and "Error" not in stopping, stopping
        names = ["development model server", "web server", "worker 1", "worker 2", "scheduler"]
        assert stopping.splitlines() == [
            "[agentops] stopping…",
            *(f"[agentops] {name} stopped" for name in reversed(names)),
            "[agentops] Redis stopped",
            "[agentops] Postgres stopped",
        ], stopping
        _gone, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
        assert not embedded.redis_answers(embedded.redis_socket())
        assert not (embedded.postgres_dir() / "postmaster.pid").exists()
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        embedded.stop_services()


@pytest.mark.parametrize("name", ["WORKER_PROCESSES", "WEB_PROCESSES"])
def test_it_refuses_a_process_count_that_is_not_a_number(services_folder, name):
    env = dict(os.environ) | {"AGENTOPS_VAR_DIR": str(services_folder), name: "two"}
    result = python_run(["-m", "agentops.launcher"], env=env, timeout=60)
    assert result.returncode == 1
    assert f"{name} must be a whole number, 1 or more, not 'two'" in result.stderr
    assert not (services_folder / "postgres").exists()  # nothing was started
