"""Tools for crash tests and the chaos benchmark (registered by agentops.testing.settings).

Each execution appends one line to <VAR_DIR>/side_effects.log before it sleeps, so a test
can count how often each idempotency key really ran, across killed processes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from django.conf import settings

from tools.executors import ToolContext
from tools.registry import python_tool


def side_effects_log() -> Path:
    return Path(settings.VAR_DIR) / "side_effects.log"


def _record(label: str, idempotent: bool, context: ToolContext) -> None:
    line = json.dumps(
        {
            "key": context.idempotency_key,
            "run": str(context.run_id),
            "label": label,
            "idempotent": idempotent,
            "t": time.time(),
            "pid": os.getpid(),
        }
    )
    with side_effects_log().open("a") as log:
        log.write(line + "\n")


@python_tool(description="Make a non-idempotent change (test tool).", idempotent=False)
def side_effect(label: str, seconds: float = 0.2, *, context: ToolContext) -> str:
    _record(label, False, context)
    time.sleep(seconds)
    return f"changed {label}"


@python_tool(description="Look something up, safely repeatable (test tool).")
def slow_lookup(label: str, seconds: float = 0.2, *, context: ToolContext) -> str:
    _record(label, True, context)
    time.sleep(seconds)
    return f"found {label}"


@python_tool(description="Always fails (test tool for fallbacks).")
def broken_lookup(label: str, seconds: float = 0.0) -> str:
    raise RuntimeError(f"the lookup service for {label} is down")


@python_tool(description="The database backend serving this job (test tool).")
def database_backend() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return str(pid)
