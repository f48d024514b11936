"""Reads for the playground: a recorded model call as it was sent, past playground runs, and
the readable diff of two outputs."""

from __future__ import annotations

import difflib
import json
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from agentops.models import ModelEndpoint, PlaygroundRun
from tracing import semconv
from tracing.models import Span, SpanStatus
from tracing.rollups import PriceBook


@dataclass
class ModelCallSource:
    """A `model.call` span: the exact request (messages, tools, settings) and its outcome."""

    trace_id: uuid.UUID
    span_id: str
    agent: str
    purpose: str
    endpoint_name: str
    endpoint: ModelEndpoint | None
    model: str
    response_model: str
    temperature: float | None
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    recorded: bool  # the request was kept (spans before it was recorded have no messages)
    truncated: bool  # the request was cut to TRACE_CONTENT_MAX_CHARS: not exact
    output_content: str
    output_tool_calls: list[dict[str, Any]]
    input_tokens: int
    output_tokens: int
    latency_ms: float
    cost: Decimal | None
    succeeded: bool
    error_class: str = ""
    error_message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _price(model: str, tokens_in: int, tokens_out: int) -> Decimal | None:
    prices = PriceBook()
    if prices.price(model) is None:
        return None
    return prices.cost(model, tokens_in, tokens_out)


def model_call_source(*, trace_id: uuid.UUID, span_id: str) -> ModelCallSource | None:
    span = Span.objects.filter(
        trace_id=trace_id, span_id=span_id, name=semconv.MODEL_CALL, is_event=False
    ).first()
    if span is None:
        return None
    a = span.attributes or {}
    output = (a.get(semconv.OUTPUT_MESSAGES) or [{}])[0] or {}
    name = str(a.get("endpoint", ""))
    model = str(a.get(semconv.REQUEST_MODEL, ""))
    response_model = str(a.get(semconv.RESPONSE_MODEL, "") or "")
    tokens_in = int(a.get(semconv.INPUT_TOKENS) or 0)
    tokens_out = int(a.get(semconv.OUTPUT_TOKENS) or 0)
    temperature = a.get(semconv.REQUEST_TEMPERATURE)
    return ModelCallSource(
        trace_id=span.trace_id,
        span_id=span.span_id,
        agent=span.agent,
        purpose=str(a.get("purpose", "")),
        endpoint_name=name,
        endpoint=ModelEndpoint.objects.filter(name=name).first() if name else None,
        model=model,
        response_model=response_model,
        temperature=float(temperature) if isinstance(temperature, int | float) else None,
        messages=list(a.get(semconv.INPUT_MESSAGES) or []),
        tools=list(a.get(semconv.TOOL_DEFINITIONS) or []),
        recorded=semconv.INPUT_MESSAGES in a,
        truncated=bool(a.get(semconv.CONTENT_TRUNCATED)),
        output_content=str(output.get("content") or ""),
        output_tool_calls=list(output.get("tool_calls") or []),
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        latency_ms=span.duration_ms,
        cost=_price(response_model or model, tokens_in, tokens_out),
        succeeded=span.status == SpanStatus.OK,
        error_class=span.error_class,
        error_message=span.error_message,
    )


def playground_run_cost(*, run: PlaygroundRun) -> Decimal | None:
    return _price(run.response_model or run.model, run.input_tokens, run.output_tokens)


def playground_runs(*, limit: int = 50) -> QuerySet[PlaygroundRun]:
    return PlaygroundRun.objects.select_related("created_by")[:limit]


def playground_runs_of(*, trace_id: uuid.UUID, span_id: str) -> QuerySet[PlaygroundRun]:
    return PlaygroundRun.objects.filter(source_trace_id=trace_id, source_span_id=span_id)


def output_text(*, content: str, tool_calls: list[dict[str, Any]]) -> str:
    """An output as one text to compare: the answer, then each proposed tool call a line."""
    lines = [content] if content else []
    for call in tool_calls:
        fn = call.get("function") or {}
        lines.append(f"→ {fn.get('name', '')}({fn.get('arguments', '')})")
    return "\n".join(lines)


_TOKEN_RE = re.compile(r"\s+|\w+|[^\w\s]")


@dataclass(frozen=True)
class DiffPart:
    op: str  # "equal", "delete" (only in the original), "insert" (only in the re-run)
    text: str


def output_diff(*, original: str, new: str) -> list[DiffPart]:
    """A word diff (words, spaces and punctuation as units) that keeps line breaks, so it
    reads as text with the changes marked."""
    a, b = _TOKEN_RE.findall(original), _TOKEN_RE.findall(new)
    parts: list[DiffPart] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(DiffPart("equal", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            parts.append(DiffPart("delete", "".join(a[i1:i2])))
        if j2 > j1:
            parts.append(DiffPart("insert", "".join(b[j1:j2])))
    return parts


def pretty(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
