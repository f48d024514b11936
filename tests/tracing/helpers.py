"""Spans with chosen times and durations, for metrics checked against hand-computed values."""

from __future__ import annotations

import secrets
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any

from tracing.models import Span


class TraceBuilder:
    """Writes the spans of one trace (a run) with explicit offsets from `start`."""

    def __init__(
        self, start: datetime, agent: str = "alpha", trace_id: uuid.UUID | None = None
    ) -> None:
        self.trace_id = trace_id or uuid.uuid4()
        self.start = start
        self.agent = agent
        self.seq = 0
        self.spans: list[Span] = []

    def add(
        self,
        name: str,
        *,
        at_ms: float = 0,
        duration_ms: float = 0,
        error: str = "",
        event: bool = False,
        parent: str = "",
        **attributes: Any,
    ) -> Span:
        self.seq += 1
        begin = self.start + timedelta(milliseconds=at_ms)
        span = Span(
            trace_id=self.trace_id,
            seq=self.seq,
            span_id=secrets.token_hex(8),
            parent_span_id=parent,
            name=name,
            is_event=event,
            status="error" if error else "ok",
            error_class=error,
            error_message=f"{error} happened" if error else "",
            start_time=begin,
            end_time=begin + timedelta(milliseconds=duration_ms),
            duration_ms=duration_ms,
            agent=self.agent,
            attributes=attributes,
        )
        self.spans.append(span)
        return span

    def status(self, status: str, *, at_ms: float) -> Span:
        return self.add("run.status", at_ms=at_ms, event=True, status=status)

    def model(
        self,
        model: str,
        *,
        at_ms: float,
        duration_ms: float,
        tokens_in: int = 0,
        tokens_out: int = 0,
        error: str = "",
    ) -> Span:
        return self.add(
            "model.call",
            at_ms=at_ms,
            duration_ms=duration_ms,
            error=error,
            **{
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "gen_ai.usage.input_tokens": tokens_in,
                "gen_ai.usage.output_tokens": tokens_out,
            },
        )

    def tool(self, tool: str, *, at_ms: float, duration_ms: float, error: str = "") -> Span:
        return self.add(
            "tool.call",
            at_ms=at_ms,
            duration_ms=duration_ms,
            error=error,
            **{"gen_ai.tool.name": tool},
        )

    def save(self) -> list[Span]:
        return Span.objects.bulk_create(self.spans)


def fixed_runs(start: datetime) -> dict[str, TraceBuilder]:
    """Four runs of two agents; the values the tests expect are worked out by hand next to them.

    alpha: A1 succeeded (1000 ms), A2 failed (2000 ms, one retry), A3 handed off (3000 ms, one
    fallback, a failed tool call and a rejected one); beta: B1 succeeded (500 ms).
    """
    a1 = TraceBuilder(start, "alpha")
    a1.status("running", at_ms=0)
    a1.model("gpt-x", at_ms=10, duration_ms=100, tokens_in=100, tokens_out=50)
    a1.tool("search", at_ms=120, duration_ms=20)
    a1.model("gpt-x", at_ms=150, duration_ms=200, tokens_in=150, tokens_out=30)
    a1.status("succeeded", at_ms=1000)

    a2 = TraceBuilder(start, "alpha")
    a2.status("running", at_ms=0)
    a2.model("gpt-x", at_ms=10, duration_ms=400, error="server_error")
    a2.add("retry.wait", at_ms=420, duration_ms=50, attempt=1)
    a2.model("gpt-x", at_ms=480, duration_ms=300, tokens_in=80, tokens_out=0, error="timeout")
    a2.status("failed", at_ms=2000)

    a3 = TraceBuilder(start, "alpha")
    a3.status("running", at_ms=0)
    a3.tool("search", at_ms=10, duration_ms=30, error="tool_error")
    a3.add(
        "tool.rejected",
        at_ms=50,
        event=True,
        error="invalid_request",
        **{"gen_ai.tool.name": "nope"},
    )
    a3.add("fallback", at_ms=60, event=True)
    a3.add("handoff", at_ms=2900, duration_ms=100, reason="stuck")

    b1 = TraceBuilder(start, "beta")
    b1.status("running", at_ms=0)
    b1.model("gpt-y", at_ms=10, duration_ms=50, tokens_in=10, tokens_out=5)
    b1.status("succeeded", at_ms=500)
    for builder in (a1, a2, a3, b1):
        builder.save()
    return {"a1": a1, "a2": a2, "a3": a3, "b1": b1}


class Receiver:
    """A loopback HTTP server that records POST bodies and answers with `status`."""

    def __init__(self, status: int = 200) -> None:
        import http.server
        import threading

        self.status = status
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def resolver_for(*addresses: str):  # type: ignore[no-untyped-def]
    """A stand-in for DNS that answers `addresses` for any name and records the names asked."""
    calls = []

    def resolve(host, port, type=0):  # type: ignore[no-untyped-def]
        calls.append(host)
        family = socket.AF_INET6 if ":" in addresses[0] else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve
