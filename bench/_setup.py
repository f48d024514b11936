"""Shared setup for benchmarks: their own data folder (var/bench), migrated, Django ready."""

from __future__ import annotations

import atexit
import json
import os
import sys
import urllib.request
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
