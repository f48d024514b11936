"""`make run`: start the whole product and stop every process it started on Ctrl-C.

Starts (or reuses) the embedded Postgres and Redis when DATABASE_URL / REDIS_URL are
unset, migrates, seeds the demo, then runs the development model server (when no
OpenAI endpoint is configured), the ASGI web server, an RQ worker and the RQ scheduler.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from agentops.embedded import (
    EmbeddedServiceError,
    postgres_dir,
    redis_socket,
    start_postgres,
    start_redis,
    stop_postgres,
    stop_redis,
)

PYTHON = sys.executable
MANAGE = [PYTHON, str(Path(__file__).resolve().parent.parent / "manage.py")]


def _say(message: str) -> None:
    print(f"[agentops] {message}", flush=True)


def _wait_http(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback URL we built
                return True
        except Exception:
            time.sleep(0.2)
    return False


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentops.settings")
    os.environ.setdefault("DEBUG", "1")
    port = os.environ.get("PORT", "8000")
    started_pg = started_redis = False
    try:
        if not os.environ.get("DATABASE_URL"):
            started_pg = not (postgres_dir() / "postmaster.pid").exists()
            os.environ["DATABASE_URL"] = start_postgres()
            _say(f"Postgres (embedded, pgvector) in {postgres_dir()}")
        if not os.environ.get("REDIS_URL"):
            started_redis = not redis_socket().exists()
            os.environ["REDIS_URL"] = start_redis()
            _say(f"Redis (embedded) at {redis_socket()}")
    except EmbeddedServiceError as exc:
        _say(f"error: {exc}")
        return 1

    children: list[subprocess.Popen] = []

    def stop_all(*_: object) -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in reversed(children):
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if started_redis:
            stop_redis()
        if started_pg:
            stop_postgres()

    try:
        subprocess.run([*MANAGE, "migrate", "--no-input", "-v", "0"], check=True)
        subprocess.run([*MANAGE, "seed_demo"], check=True)
        if not os.environ.get("OPENAI_API_KEY") and not os.environ.get("OPENAI_BASE_URL"):
            devport = os.environ.get("DEVMODEL_PORT", "8765")
            children.append(
                subprocess.Popen([PYTHON, "-m", "agentops.devmodel.server", "--port", devport])
            )
            _say(f"development model server on http://127.0.0.1:{devport}/v1")
        children.append(
            subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "uvicorn",
                    "agentops.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    port,
                    "--log-level",
                    "warning",
                    "--ws",
                    "websockets",
                ]
            )
        )
        children.append(
            subprocess.Popen(
                [
                    *MANAGE,
                    "rqworker",
                    "maintenance",
                    "runs",
                    "--worker-class",
                    "agentops.worker.Worker",
                ]
            )
        )
        children.append(subprocess.Popen([*MANAGE, "scheduler"]))
        if not _wait_http(f"http://127.0.0.1:{port}/healthz", 30):
            _say("the web server did not answer within 30 s; see the output above")
        _say(f"AgentOps is running at http://127.0.0.1:{port}/  (Ctrl-C stops everything)")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        dead = next(child for child in children if child.poll() is not None)
        _say(f"process {str(dead.args)[:80]} exited with {dead.returncode}; stopping")
        return 1
    except KeyboardInterrupt:
        _say("stopping…")
        return 0
    except subprocess.CalledProcessError as exc:
        _say(f"error: {' '.join(map(str, exc.cmd))} failed with exit code {exc.returncode}")
        return 1
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
