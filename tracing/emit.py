"""The emission API: a Tracer per run records nested spans and point events.

Records are buffered in memory and written in one INSERT by `flush()`, which the
runtime calls inside each step's checkpoint transaction; they are broadcast to the
run's live stream after that transaction commits. Span and attribute names follow the
OpenTelemetry GenAI conventions where one exists (`gen_ai.request.model`, ...).
"""

from __future__ import annotations

import json
import random
import re
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import Max

from tracing import otlp, semconv
from tracing.models import Span, SpanStatus
from tracing.platform import conf
from tracing.platform.failures import Interruption, failure_class_of
from tracing.platform.live import broadcast, cancel_soon, run_group, send_now, send_soon

MAX_ATTRIBUTE_CHARS = 2000
SPAN_START_NOTICE_DELAY = 0.05  # seconds a span must stay open before "span.start" is sent
REDACTED = "[REDACTED]"
# Attributes a "span.start" notice carries, so an open span can be told apart on the page.
NOTICE_ATTRIBUTES = ("gen_ai.request.model", "gen_ai.tool.name", "step", "attempt", "kind")
_SECRET_KEY_RE = re.compile(r"(authorization|api[_-]?key|password|secret|token|cookie)", re.I)


def truncate(value: str, limit: int = MAX_ATTRIBUTE_CHARS) -> str:
    return value if len(value) <= limit else value[:limit] + f"… [{len(value) - limit} more chars]"


class SpanRecord:
    """A span while it is open; `set(...)` adds attributes, `fail(...)` marks an error."""

    __slots__ = (
        "attributes",
        "error_class",
        "error_message",
        "name",
        "parent_id",
        "span_id",
        "start_mono",
        "start_time",
        "status",
    )

    def __init__(self, name: str, parent_id: str, attributes: dict[str, Any]) -> None:
        self.name = name
        self.span_id = f"{random.getrandbits(64):016x}"  # as OpenTelemetry's SDK makes ids
        self.parent_id = parent_id
        self.attributes = attributes
        self.start_time = datetime.now(UTC)
        self.start_mono = time.perf_counter()
        self.status = SpanStatus.OK
        self.error_class = ""
        self.error_message = ""

    def set(self, **attributes: object) -> None:
        self.attributes.update(attributes)

    def fail(self, error_class: str, message: str) -> None:
        self.status = SpanStatus.ERROR
        self.error_class = error_class
        self.error_message = message


class Tracer:
    def __init__(
        self,
        trace_id: uuid.UUID,
        *,
        session_id: uuid.UUID | None = None,
        agent: str = "",
        secrets_to_redact: list[str] | None = None,
        sandbox: bool = False,
        new_trace: bool = False,
    ) -> None:
        """`new_trace`: nothing was written to it yet (its spans are numbered from 1 without
        reading how far it got)."""
        self.trace_id = trace_id
        self.session_id = session_id
        self.agent = agent
        self.sandbox = sandbox
        self._secrets = [s for s in (secrets_to_redact or []) if s and len(s) >= 4]
        self._stack: list[SpanRecord] = []
        self._buffer: list[Span] = []
        self._seq: int | None = 0 if new_trace else None
        self._streamed: dict[str, int] = {}  # span id -> characters of text streamed into it

    # -- redaction ---------------------------------------------------------------------
    def add_secret(self, value: str) -> None:
        if value and len(value) >= 4 and value not in self._secrets:
            self._secrets.append(value)

    def forget(self, values: list[str]) -> None:
        """Texts taken out of the conversation (a guardrail redacted them): replaced in the
        records not stored yet, and in every record made from now on."""
        added = [v for v in values if v and len(v) >= 4 and v not in self._secrets]
        if not added:
            return
        self._secrets += added

        def scrub(value: Any) -> Any:
            if isinstance(value, str):
                for text in added:
                    value = value.replace(text, REDACTED)
                return value
            if isinstance(value, dict):
                return {k: scrub(v) for k, v in value.items()}
            if isinstance(value, list):
                return [scrub(v) for v in value]
            return value

        for span in self._buffer:
            span.attributes = scrub(span.attributes)
            span.error_message = scrub(span.error_message)

    def redact(self, value: Any, key: str = "") -> Any:
        if key and _SECRET_KEY_RE.search(key) and not key.startswith("gen_ai.usage"):
            return REDACTED if value not in (None, "", 0) else value
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return truncate(value.replace("\x00", "\ufffd"))  # Postgres can store no NUL
        if isinstance(value, dict):
            return {k: self.redact(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(v) for v in value][:100]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.redact(str(value))

    def redact_content(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """A model call's messages, tools and output (semconv.CONTENT_ATTRIBUTES): known secrets
        replaced, and together cut to TRACE_CONTENT_MAX_CHARS by shortening the longest texts
        (marked `agentops.content_truncated`). No name-based redaction: a tool's parameter may
        be called `max_tokens`, and these are what the model was sent, not settings."""
        limit = conf.trace_content_max_chars()
        if limit == 0:
            return {}

        def clean(value: Any, cut: int | None) -> Any:
            if isinstance(value, str):
                for secret in self._secrets:
                    value = value.replace(secret, REDACTED)
                value = value.replace("\x00", "\ufffd")
                return truncate(value, cut) if cut is not None else value
            if isinstance(value, dict):
                return {str(k): clean(v, cut) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [clean(v, cut) for v in value]
            if isinstance(value, int | float | bool) or value is None:
                return value
            return clean(str(value), cut)

        out = clean(attributes, None)
        cut = limit
        while len(json.dumps(out)) > limit and cut > 16:
            cut //= 2
            out = clean(attributes, cut)
            out[semconv.CONTENT_TRUNCATED] = True
        return out

    # -- recording ---------------------------------------------------------------------
    def _next_seq(self) -> int:
        if self._seq is None:
            last = Span.objects.filter(trace_id=self.trace_id).aggregate(m=Max("seq"))["m"]
            self._seq = last or 0
        self._seq += 1
        return self._seq

    @property
    def current_span_id(self) -> str:
        return self._stack[-1].span_id if self._stack else ""

    @contextmanager
    def span(self, name: str, **attributes: object) -> Iterator[SpanRecord]:
        record = SpanRecord(name, self.current_span_id, attributes)
        self._stack.append(record)
        # Announced only if still open after a moment: most spans end sooner, and a
        # browser gains nothing from a start notice that arrives with the span itself.
        send_soon(
            record.span_id,
            run_group(self.trace_id),
            {
                "kind": "span.start",
                "name": name,
                "span_id": record.span_id,
                "parent_span_id": record.parent_id,
                "start_time": record.start_time.isoformat(),
                "attributes": {
                    k: self.redact(attributes[k], k) for k in NOTICE_ATTRIBUTES if k in attributes
                },
            },
            delay=SPAN_START_NOTICE_DELAY,
        )
        try:
            yield record
        except Interruption as exc:
            record.attributes["outcome"] = exc.outcome
            raise
        except BaseException as exc:
            if record.status != SpanStatus.ERROR:
                record.fail(failure_class_of(exc), str(exc) or type(exc).__name__)
                if record.error_class == "bug":
                    record.attributes["exception.stacktrace"] = "".join(
                        traceback.format_exception(exc)
                    )[-4000:]
            raise
        finally:
            cancel_soon(record.span_id)
            self._streamed.pop(record.span_id, None)
            self._stack.pop()
            self._record(record, is_event=False)

    def stream_text(self, text: str) -> None:
        """Send text the current span produces as it comes (a model call's tokens) to the run's
        stream at once; `at` is its offset in all the span has streamed."""
        span_id = self.current_span_id
        if not span_id or not text:
            return
        text = self.redact(text)
        at = self._streamed.get(span_id, 0)
        self._streamed[span_id] = at + len(text)
        send_now(
            run_group(self.trace_id),
            {"kind": "span.text", "span_id": span_id, "at": at, "text": text},
        )

    def event(
        self,
        name: str,
        *,
        status: str = SpanStatus.OK,
        error_class: str = "",
        error_message: str = "",
        **attributes: object,
    ) -> None:
        if status not in SpanStatus.values:
            # A status of something else (`run.status` events: "running", "failed", ...) is
            # an attribute; the event is an error when it names an error class.
            attributes["status"] = status
            status = SpanStatus.ERROR if error_class else SpanStatus.OK
        record = SpanRecord(name, self.current_span_id, attributes)
        if status == SpanStatus.ERROR:
            record.fail(error_class, error_message)
        self._record(record, is_event=True)

    def _record(self, record: SpanRecord, *, is_event: bool) -> None:
        duration = 0.0 if is_event else (time.perf_counter() - record.start_mono) * 1000
        end_time = datetime.now(UTC) if not is_event else record.start_time
        content = {
            k: record.attributes.pop(k)
            for k in semconv.CONTENT_ATTRIBUTES
            if k in record.attributes
        }
        attributes = self.redact(record.attributes)
        if content:
            attributes.update(self.redact_content(content))
        if self.sandbox:
            attributes[semconv.SANDBOX] = True
        self._buffer.append(
            Span(
                trace_id=self.trace_id,
                seq=self._next_seq(),
                span_id=record.span_id,
                parent_span_id=record.parent_id,
                name=record.name,
                is_event=is_event,
                status=record.status,
                error_class=record.error_class,
                error_message=self.redact(record.error_message),
                start_time=record.start_time,
                end_time=end_time,
                duration_ms=round(duration, 3),
                session_id=self.session_id,
                agent=self.agent,
                attributes=attributes,
            )
        )

    def flush(self) -> list[Span]:
        """Write buffered records (one INSERT) and broadcast them after commit."""
        batch = self.take()
        if batch:
            Span.objects.bulk_create(batch)
            self.written(batch)
        return batch

    def fork(self) -> Tracer:
        """A tracer for work another thread does for this trace; `adopt` takes its records."""
        child = Tracer(
            self.trace_id,
            session_id=self.session_id,
            agent=self.agent,
            secrets_to_redact=list(self._secrets),
            sandbox=self.sandbox,
        )
        child._seq = 0  # numbered again when adopted
        return child

    def adopt(self, child: Tracer) -> None:
        """The records a forked tracer made, numbered in this trace, under the current span."""
        parent = self.current_span_id
        for span in child.take():
            span.seq = self._next_seq()
            span.parent_span_id = span.parent_span_id or parent
            self._buffer.append(span)

    def take(self) -> list[Span]:
        """Hand the buffered records to a caller that stores them in a statement of its own
        (the runtime's one-statement checkpoint); it calls `written` once they are stored."""
        batch, self._buffer = self._buffer, []
        return batch

    def restore(self, batch: list[Span]) -> None:
        """Give back records `take` handed out that were not stored after all (they go first,
        as they were made first)."""
        self._buffer[:0] = batch

    def written(self, batch: list[Span]) -> None:
        """Broadcast stored records (and export them) once the transaction commits."""
        if not batch:
            return
        payload = [span_to_event(s) for s in batch]
        broadcast(run_group(self.trace_id), {"kind": "spans", "spans": payload})
        if otlp.enabled():
            transaction.on_commit(lambda: otlp.export(batch))

    def flush_now(self) -> list[Span]:
        """Flush in a transaction of its own (for records made outside a step)."""
        if not self._buffer:
            return []
        with transaction.atomic():
            return self.flush()


# A stack trace stays in Postgres and the OTLP export; streams and the API carry none, since
# they reach viewers (the run's traceback is shown to operators and admins only).
PRIVATE_ATTRIBUTES = frozenset({"exception.stacktrace"})


def span_to_event(span: Span, *, content: bool = False) -> dict[str, Any]:
    """A stored record as streams (and, with `content`, the API) carry it: a model call's
    messages, tools and output (semconv.CONTENT_ATTRIBUTES) are large, so only the API, which
    is asked for one trace, carries them; a stream's page reads them from its own render."""
    return {
        "seq": span.seq,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "name": span.name,
        "is_event": span.is_event,
        "status": span.status,
        "error_class": span.error_class,
        "error_message": span.error_message,
        "start_time": span.start_time.isoformat(),
        "duration_ms": span.duration_ms,
        "attributes": {
            key: value
            for key, value in (span.attributes or {}).items()
            if key not in PRIVATE_ATTRIBUTES and (content or key not in semconv.CONTENT_ATTRIBUTES)
        },
    }
