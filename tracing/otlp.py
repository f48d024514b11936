"""Optional OTLP/HTTP export of stored spans (on when OTEL_EXPORTER_OTLP_ENDPOINT is set).

Spans are exported after their transaction commits, as they were stored: the same trace id
(the run id), span ids, parents, times, status and attributes. Point events become
zero-length spans, so they keep their place in the tree. Conversion and export happen on
background threads (OpenTelemetry's BatchSpanProcessor); the agent step only enqueues.

What is queued is exported at process exit (atexit) and, by the worker, at the end of each
job (`force_flush`): an RQ work horse leaves with `os._exit`, which runs no exit handler and
kills the export threads with whatever they still held.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tracing.models import Span, SpanStatus
from tracing.platform import conf
from tracing.platform.logs import get_logger

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.util.types import AttributeValue

log = get_logger(__name__)


def _attribute(value: object) -> AttributeValue:
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return json.dumps(value, default=str, ensure_ascii=False)


def span_to_otel(span: Span, resource: Resource) -> ReadableSpan:
    """One stored span as an OpenTelemetry ReadableSpan with the same ids."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    trace_id = span.trace_id.int
    context = SpanContext(
        trace_id, int(span.span_id, 16), is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    parent = (
        SpanContext(
            trace_id,
            int(span.parent_span_id, 16),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        if span.parent_span_id
        else None
    )
    attributes = {k: _attribute(v) for k, v in (span.attributes or {}).items() if v is not None}
    attributes["agentops.seq"] = span.seq
    if span.agent:
        attributes.setdefault("agent", span.agent)
    if span.session_id:
        attributes["session.id"] = str(span.session_id)
    if span.is_event:
        attributes["agentops.event"] = True
    if span.status == SpanStatus.ERROR:
        attributes.setdefault("error.type", span.error_class or "error")
        status = Status(StatusCode.ERROR, span.error_message[:500] or span.error_class)
    else:
        status = Status(StatusCode.OK)
    start_ns = int(span.start_time.timestamp() * 1e9)
    end_ns = int(span.end_time.timestamp() * 1e9) if not span.is_event else start_ns
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        kind=SpanKind.INTERNAL,
        status=status,
        start_time=start_ns,
        end_time=max(end_ns, start_ns),
        instrumentation_scope=InstrumentationScope("agentops.tracing"),
    )


class _Exporter:
    def __init__(self, endpoint: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.pid = os.getpid()
        self.endpoint = endpoint
        traces_url = conf.otlp_traces_endpoint() or endpoint.rstrip("/") + "/v1/traces"
        self.resource = Resource.create({"service.name": conf.otlp_service_name()})
        self.processor = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=traces_url), schedule_delay_millis=1000
        )
        self.queue: queue.SimpleQueue[list[Span] | None] = queue.SimpleQueue()
        self.pending = 0
        self.done = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="agentops-otlp", daemon=True)
        self.thread.start()

    def put(self, spans: list[Span]) -> None:
        with self.done:
            self.pending += 1
        self.queue.put(spans)

    def _run(self) -> None:
        while True:
            batch = self.queue.get()
            try:
                for span in batch or []:
                    self.processor.on_end(span_to_otel(span, self.resource))
            except Exception:
                log.exception("otlp.convert_failed")
            with self.done:
                self.pending -= 1
                self.done.notify_all()

    def flush(self, timeout: float) -> bool:
        with self.done:
            self.done.wait_for(lambda: self.pending == 0, timeout)
        return self.processor.force_flush(int(timeout * 1000))

    def shutdown(self) -> None:
        self.flush(5)
        self.processor.shutdown()


_exporter: _Exporter | None = None
_lock = threading.Lock()
_exit_hook = False


def _get() -> _Exporter | None:
    global _exporter, _exit_hook
    endpoint = conf.otlp_endpoint()
    if not endpoint:
        return None
    if _exporter is None or _exporter.pid != os.getpid() or _exporter.endpoint != endpoint:
        with _lock:
            if _exporter is None or _exporter.pid != os.getpid() or _exporter.endpoint != endpoint:
                if _exporter is not None and _exporter.pid == os.getpid():
                    _exporter.shutdown()
                _exporter = _Exporter(endpoint)
                if not _exit_hook:
                    atexit.register(shutdown)
                    _exit_hook = True
    return _exporter


def enabled() -> bool:
    return bool(conf.otlp_endpoint())


def export(spans: Sequence[Span]) -> None:
    """Queue committed spans for export (no-op unless an endpoint is configured)."""
    exporter = _get()
    if exporter is not None and spans:
        exporter.put(list(spans))


def force_flush(timeout: float = 10.0) -> bool:
    """Export what is queued now (tests, shutdown)."""
    exporter = _exporter
    return exporter.flush(timeout) if exporter is not None and exporter.pid == os.getpid() else True


def shutdown() -> None:
    """Export what is queued and stop the exporter (tests, process exit)."""
    global _exporter
    with _lock:
        if _exporter is not None and _exporter.pid == os.getpid():
            _exporter.shutdown()
        _exporter = None
