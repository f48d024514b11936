"""Reads for the observability pages (runs, run detail, failures)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Max, Q, QuerySet
from django.utils.dateparse import parse_datetime

from agentops.models import (
    ACTIVE_RUN_STATUSES,
    Agent,
    AgentVersion,
    Handoff,
    Message,
    Run,
    RunStatus,
    ToolCall,
)
from agentops.runtime.agent_calls import runs_below
from tracing import semconv
from tracing.models import Span, SpanStatus
from tracing.platform.live import open_notices, run_group
from tracing.platform.queries import filter_given
from tracing.rollups import PriceBook
from tracing.selectors import SpanNode, span_waterfall

MAX_DEPTH_CLASS = 9


def agent_slugs() -> list[str]:
    return list(Agent.objects.order_by("slug").values_list("slug", flat=True))


def runs_filtered(
    *,
    agent: str = "",
    status: str = "",
    error_class: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    query: str = "",
    version: int | None = None,
    source: str = "",
) -> QuerySet[Run]:
    """Runs, newest first. `source`: "" the real conversations' runs, "experiments" (the
    value kept for old links) only sandbox sessions' runs (experiments, draft chats, forks),
    "all" both."""
    qs = Run.objects.select_related("agent", "session", "agent_version").order_by(
        "-created_at", "-pk"
    )
    if source in ("experiments", "sandbox"):
        qs = qs.sandbox()
    elif source != "all":
        qs = qs.production()
    qs = filter_given(
        qs,
        agent__slug=agent,
        agent_version__number=version,
        status=status,
        error_class=error_class,
        created_at__gte=since,
        created_at__lt=until,
    )
    query = query.strip()
    if query:
        try:
            key = uuid.UUID(query)
        except ValueError:
            qs = qs.filter(session__external_user__icontains=query)
        else:
            qs = qs.filter(Q(pk=key) | Q(session_id=key))
    return qs


def run_costs(*, runs: list[Run]) -> dict[Any, Decimal]:
    """Estimated cost per run from its model calls' tokens and today's price table."""
    prices = PriceBook()
    out: dict[Any, Decimal] = {}
    rows = Span.objects.filter(
        trace_id__in=[r.pk for r in runs], name=semconv.MODEL_CALL
    ).values_list("trace_id", "attributes")
    for trace_id, attributes in rows:
        model = (
            attributes.get(semconv.RESPONSE_MODEL) or attributes.get(semconv.REQUEST_MODEL) or ""
        )
        cost = prices.cost(
            model,
            int(attributes.get(semconv.INPUT_TOKENS) or 0),
            int(attributes.get(semconv.OUTPUT_TOKENS) or 0),
        )
        out[trace_id] = out.get(trace_id, Decimal(0)) + cost
    return out


@dataclass
class WaterfallRow:
    node: SpanNode
    x: float
    w: float
    depth_class: int
    cost: Decimal | None

    @property
    def span(self) -> Span:
        return self.node.span


@dataclass
class OpenSpanRow:
    """A span still in progress (in the worker's memory, not stored yet)."""

    span_id: str
    name: str
    start_time: datetime | None
    attributes: dict[str, Any]
    depth_class: int
    text: str
    text_end: int


@dataclass
class RunTrace:
    rows: list[WaterfallRow]
    total_ms: float
    spans: int
    events: int
    errors: int
    tokens_in: int
    tokens_out: int
    cost: Decimal
    last_seq: int
    stages: dict[str, int] = field(default_factory=dict)
    open: list[OpenSpanRow] = field(default_factory=list)
    # The agents it asked as tools (child runs, at any depth): their model calls' share.
    asked_runs: int = 0
    asked_tokens_in: int = 0
    asked_tokens_out: int = 0
    asked_cost: Decimal = Decimal(0)


def run_open_spans(*, run: Run, rows: list[WaterfallRow]) -> list[OpenSpanRow]:
    """The run's spans open now, after the stored ones and nested under their parents."""
    if run.status != RunStatus.RUNNING:
        return []
    depth = {row.span.span_id: row.node.depth for row in rows}
    out = []
    notices = sorted(open_notices(run_group(run.pk)), key=lambda n: str(n.get("start_time")))
    for notice in notices:
        span_id = str(notice.get("span_id", ""))
        if not span_id or span_id in depth:
            continue  # stored since: it is a row of the waterfall already
        parent = depth.get(str(notice.get("parent_span_id", "")))
        depth[span_id] = 0 if parent is None else parent + 1
        out.append(
            OpenSpanRow(
                span_id=span_id,
                name=str(notice.get("name", "")),
                start_time=parse_datetime(str(notice.get("start_time", ""))),
                attributes=dict(notice.get("attributes") or {}),
                depth_class=min(depth[span_id], MAX_DEPTH_CLASS),
                text=str(notice.get("text", "")),
                text_end=int(notice.get("text_end") or 0),
            )
        )
    return out


def run_trace(*, run: Run) -> RunTrace:
    spans = list(Span.objects.filter(trace_id=run.pk).order_by("seq"))
    waterfall = span_waterfall(spans=spans)
    prices = PriceBook()
    rows, cost, tokens_in, tokens_out = [], Decimal(0), 0, 0
    for node in waterfall.rows:
        span = node.span
        span_cost = None
        if span.name == semconv.MODEL_CALL:
            model = (
                span.attributes.get(semconv.RESPONSE_MODEL)
                or span.attributes.get(semconv.REQUEST_MODEL)
                or ""
            )
            if prices.price(model) is not None:
                span_cost = prices.cost(model, node.tokens_in, node.tokens_out)
                cost += span_cost
            tokens_in += node.tokens_in
            tokens_out += node.tokens_out
        x = node.offset_ms / waterfall.total_ms * 1000
        w = max(span.duration_ms / waterfall.total_ms * 1000, 2.0)
        rows.append(
            WaterfallRow(
                node,
                round(min(x, 998), 2),
                round(min(w, 1000 - x), 2),
                min(node.depth, MAX_DEPTH_CLASS),
                span_cost,
            )
        )
    stages: dict[str, int] = {}
    for span in spans:
        stages[span.name] = stages.get(span.name, 0) + 1
    below = runs_below(run_id=run.pk)
    asked_in = asked_out = 0
    asked_cost = Decimal(0)
    calls = Span.objects.filter(trace_id__in=below, name=semconv.MODEL_CALL)
    for attributes in calls.values_list("attributes", flat=True):
        call_in = int(attributes.get(semconv.INPUT_TOKENS) or 0)
        call_out = int(attributes.get(semconv.OUTPUT_TOKENS) or 0)
        model = attributes.get(semconv.RESPONSE_MODEL) or attributes.get(semconv.REQUEST_MODEL)
        asked_in, asked_out = asked_in + call_in, asked_out + call_out
        asked_cost += prices.cost(str(model or ""), call_in, call_out)
    return RunTrace(
        rows=rows,
        total_ms=waterfall.total_ms if spans else 0.0,
        spans=sum(1 for s in spans if not s.is_event),
        events=sum(1 for s in spans if s.is_event),
        errors=sum(1 for s in spans if s.status == SpanStatus.ERROR),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost=cost,
        last_seq=spans[-1].seq if spans else 0,
        stages=stages,
        open=run_open_spans(run=run, rows=rows),
        asked_runs=len(below),
        asked_tokens_in=asked_in,
        asked_tokens_out=asked_out,
        asked_cost=asked_cost,
    )


def run_messages(*, run: Run) -> QuerySet[Message]:
    condition = Q(run=run)
    if run.trigger_id:
        condition |= Q(pk=run.trigger_id)
    return Message.objects.filter(condition).select_related("author").order_by("seq")


def run_tool_calls(*, run: Run) -> QuerySet[ToolCall]:
    return (
        ToolCall.objects.filter(run=run)
        .select_related("decided_by")
        .order_by("step", "started_at", "pk")
    )


def run_handoffs(*, run: Run) -> QuerySet[Handoff]:
    return Handoff.objects.filter(run=run).order_by("-created_at")


def run_forks(*, run: Run) -> QuerySet[Run]:
    """The first runs of the forks made from this run."""
    # Experiment runs answer from this run's recording too, but are no fork of it.
    return (
        Run.objects.filter(forked_from=run, forked_at_step__isnull=False)
        .select_related("session")
        .order_by("created_at")
    )


def agent_version_numbers(*, agent_id: int) -> list[int]:
    """The agent's version numbers, newest first (a fork may run any of them)."""
    return list(
        AgentVersion.objects.filter(agent_id=agent_id)
        .order_by("-number")
        .values_list("number", flat=True)
    )


def run_is_live(*, run: Run) -> bool:
    return run.status in ACTIVE_RUN_STATUSES


# --- failures -------------------------------------------------------------------------------


@dataclass
class FailureGroup:
    error_class: str
    agent: str
    status: str
    count: int
    last_at: datetime
    runs: list[Run]


def failures_grouped(
    *, since: datetime | None, agent: str = "", version: int | None = None, per_group: int = 5
) -> list[FailureGroup]:
    """Failed runs and runs handed off because of a failure, grouped by (error class, agent,
    status), biggest group first. A handoff that was asked for (no error class) is no failure.
    Experiment runs are left out."""
    qs = Run.objects.production().filter(  # an experiment's are on its comparison page
        Q(status=RunStatus.FAILED) | (Q(status=RunStatus.HANDED_OFF) & ~Q(error_class=""))
    )
    qs = filter_given(qs, created_at__gte=since, agent__slug=agent, agent_version__number=version)
    groups = (
        qs.values("error_class", "agent__slug", "status")
        .annotate(count=Count("pk"), last_at=Max("created_at"))
        .order_by("-count", "-last_at")[:50]
    )
    out = []
    for g in groups:
        runs = list(
            qs.filter(
                error_class=g["error_class"], agent__slug=g["agent__slug"], status=g["status"]
            )
            .select_related("agent", "session", "agent_version")
            .order_by("-created_at")[:per_group]
        )
        out.append(
            FailureGroup(
                g["error_class"], g["agent__slug"], g["status"], g["count"], g["last_at"], runs
            )
        )
    return out


def failing_spans(*, run_ids: list[Any]) -> dict[Any, Span]:
    """The last span that ended in error per run (where the run broke)."""
    spans = (
        Span.objects.filter(trace_id__in=run_ids, status=SpanStatus.ERROR)
        .exclude(name=semconv.RUN_STATUS)
        .order_by("trace_id", "-seq")
        .distinct("trace_id")
    )
    return {s.trace_id: s for s in spans}
