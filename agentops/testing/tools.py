"""Tools for crash tests and the chaos benchmark (registered by agentops.testing.settings).

Each execution appends one line to <VAR_DIR>/side_effects.log before it sleeps, so a test
can count how often each idempotency key really ran, across killed processes.

`KeyedChargeServer` is a service on loopback that honours an idempotency key (Stripe-style:
a change once per key, a repeated key answered with the first answer) and counts its
effects; `keyed_charge_tool` is an HTTP tool that calls it, declared to honour the key.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django.conf import settings

from tools.executors import ToolContext
from tools.models import ToolDefinition, ToolKind
from tools.registry import python_tool

KEY_HEADER = "Idempotency-Key"
KEYED_CHARGE_TOOL = "keyed_charge"


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


@python_tool(
    description="Make a change once per idempotency key (test tool).",
    idempotent=False,
    idempotency_key="idempotency_key",
)
def keyed_side_effect(label: str, seconds: float = 0.2, *, idempotency_key: str) -> str:
    """Its service is the log: a key already there is answered as before, not done again."""
    log = side_effects_log()
    with log.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        done = [json.loads(line) for line in handle if line.strip()]
        if not any(e["key"] == idempotency_key for e in done):
            entry = {"key": idempotency_key, "label": label, "idempotent": False, "keyed": True}
            handle.write(json.dumps({**entry, "t": time.time(), "pid": os.getpid()}) + "\n")
    time.sleep(seconds)
    return f"changed {label} once for {idempotency_key}"


# -- a service that honours an idempotency key ----------------------------------------------


@dataclass
class Charge:
    key: str
    label: str
    serial: int
    at: float
    done: threading.Event = field(default_factory=threading.Event)
    response: bytes = b""


class _ChargeHandler(BaseHTTPRequestHandler):
    server: _ChargeHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        key = self.headers.get(KEY_HEADER, "")
        if not key:
            self._send(400, b'{"error": "an Idempotency-Key header is required"}')
            return
        charge, first = self.server.owner.charge_for(key, str(body.get("label", "")))
        if first:
            time.sleep(float(body.get("seconds") or 0))  # on purpose: the change takes a while
            charge.response = json.dumps({"charge": charge.serial, "label": charge.label}).encode()
            charge.done.set()
        elif not charge.done.wait(30):
            self._send(409, b'{"error": "a request with this key is still in progress"}')
            return
        self._send(200, charge.response, replayed=not first)

    def _send(self, status: int, body: bytes, *, replayed: bool = False) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if replayed:
                self.send_header("Idempotent-Replayed", "true")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the caller is gone (its worker was killed): the change is made all the same


class _ChargeHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: KeyedChargeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a killed caller resets: expected
            super().handle_error(request, client_address)


class KeyedChargeServer:
    """POST /charges {"label", "seconds"} with an Idempotency-Key header: the first request of
    a key makes one charge (an effect, counted) and takes `seconds`; a later one with the same
    key makes none and gets the first one's answer (after it, if it is still in progress)."""

    def __init__(self) -> None:
        self.charges: dict[str, Charge] = {}
        self.requests: dict[str, int] = {}
        self.lock = threading.Lock()
        self.httpd = _ChargeHttpServer(("127.0.0.1", 0), _ChargeHandler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/charges"

    def charge_for(self, key: str, label: str) -> tuple[Charge, bool]:
        """The key's charge, and whether this request made it."""
        with self.lock:
            self.requests[key] = self.requests.get(key, 0) + 1
            if key in self.charges:
                return self.charges[key], False
            charge = Charge(key=key, label=label, serial=len(self.charges) + 1, at=time.time())
            self.charges[key] = charge
            return charge, True

    def repeated_keys(self) -> int:
        """Keys sent more than once: calls sent again, answered without a second charge."""
        with self.lock:
            return sum(1 for count in self.requests.values() if count > 1)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def keyed_charge_tool(url: str, *, name: str = KEYED_CHARGE_TOOL) -> ToolDefinition:
    """An HTTP tool that POSTs to a KeyedChargeServer: not idempotent, honours the key."""
    from tools.services import tool_save

    tool = ToolDefinition.objects.filter(name=name).first() or ToolDefinition(name=name)
    tool.kind = ToolKind.HTTP
    tool.description = "Charge something once (test tool: a service honouring Idempotency-Key)."
    tool.parameters = {
        "type": "object",
        "properties": {"label": {"type": "string"}, "seconds": {"type": "number"}},
        "required": ["label"],
    }
    tool.http_config = {
        "method": "POST",
        "url": url,
        "body_format": "json",
        "body": '{"label": "{{label}}", "seconds": {{seconds}}}',
        "idempotency_header": KEY_HEADER,
    }
    tool.idempotent = False
    tool.honours_idempotency_key = True
    tool.timeout_seconds = 10
    return tool_save(tool=tool)
