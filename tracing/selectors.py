"""Reads of the tracing app: span trees, metrics from the rollups, storage sizes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.db import connection
from django.db.models import QuerySet

from tracing import semconv
from tracing.metrics import Totals, percentile
from tracing.models import AlertEvent, AlertRule, MetricRollup, RollupKind, Span

# --- traces ---------------------------------------------------------------------------------


@dataclass
class SpanNode:
    span: Span
    depth: int
    offset_ms: float
    children: list[SpanNode] = field(default_factory=list)
    events: list[Span] = field(default_factory=list)

    @property
    def tokens_in(self) -> int:
        return int(self.span.attributes.get(semconv.INPUT_TOKENS) or 0)

    @property
    def tokens_out(self) -> int:
        return int(self.span.attributes.get(semconv.OUTPUT_TOKENS) or 0)


@dataclass
class Waterfall:
    rows: list[SpanNode]
    total_ms: float
    start: datetime | None
    open_spans: int = 0


def span_waterfall(*, spans: Iterable[Span]) -> Waterfall:
    """Spans as a depth-first tree (children by start time) with offsets from the trace start.

    Point events hang under the span they happened in. A span whose parent is not stored
    (still open, or removed by retention) is shown at the top level.
    """
    spans = list(spans)
    if not spans:
        return Waterfall(rows=[], total_ms=0.0, start=None)
    start = min(s.start_time for s in spans)
    end = max(s.end_time for s in spans)
    nodes: dict[str, SpanNode] = {}
    for s in spans:
        if not s.is_event:
            nodes[s.span_id] = SpanNode(s, 0, (s.start_time - start).total_seconds() * 1000)
    roots: list[SpanNode] = []
    loose_events: list[Span] = []
    for s in spans:
        parent = nodes.get(s.parent_span_id)
        if s.is_event:
            (parent.events if parent else loose_events).append(s)
            continue
        node = nodes[s.span_id]
        (parent.children if parent and parent is not node else roots).append(node)
    for s in loose_events:
        roots.append(SpanNode(s, 0, (s.start_time - start).total_seconds() * 1000))
    rows: list[SpanNode] = []

    def walk(node: SpanNode, depth: int) -> None:
        node.depth = depth
        rows.append(node)
        for child in sorted(node.children, key=lambda n: (n.span.start_time, n.span.seq)):
            walk(child, depth + 1)

    for root in sorted(roots, key=lambda n: (n.span.start_time, n.span.seq)):
        walk(root, 0)
    return Waterfall(
        rows=rows, total_ms=max((end - start).total_seconds() * 1000, 0.001), start=start
    )


# --- metrics --------------------------------------------------------------------------------


@dataclass
class Stats(Totals):
    """Sums of rollup rows with the rates and percentiles people read."""

    kind: str = ""
    agent: str = ""
    key: str = ""

    @staticmethod
    def _ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    @property
    def success_rate(self) -> float | None:
        return self._ratio(self.succeeded, self.count)

    @property
    def error_rate(self) -> float | None:
        return self._ratio(self.errors, self.count)

    @property
    def handoff_rate(self) -> float | None:
        return self._ratio(self.handed_off, self.count)

    @property
    def retries_per_run(self) -> float | None:
        return self._ratio(self.retries, self.count)

    @property
    def fallbacks_per_run(self) -> float | None:
        return self._ratio(self.fallbacks, self.count)

    @property
    def p50(self) -> float | None:
        return percentile(self.latency_hist, 0.50)

    @property
    def p95(self) -> float | None:
        return percentile(self.latency_hist, 0.95)

    @property
    def p99(self) -> float | None:
        return percentile(self.latency_hist, 0.99)


def rollup_bucket_for(*, since: datetime, until: datetime) -> int:
    """Minute rows for windows up to a day, hour rows beyond (minute rows expire sooner)."""
    return 60 if until - since <= timedelta(days=1) else 3600


def _rollups(*, since: datetime, until: datetime, agent: str = "") -> QuerySet[MetricRollup]:
    seconds = rollup_bucket_for(since=since, until=until)
    floor = datetime.fromtimestamp(int(since.timestamp()) // seconds * seconds, tz=since.tzinfo)
    qs = MetricRollup.objects.filter(bucket_seconds=seconds, start__gte=floor, start__lt=until)
    return qs.filter(agent=agent) if agent else qs


def metrics_totals(*, since: datetime, until: datetime, agent: str = "") -> dict[str, Any]:
    """Window totals: `run` (Stats over runs), `model`, `tool` (Stats over calls), `cost`."""
    totals = {kind: Stats(kind=kind) for kind in RollupKind.values}
    for row in _rollups(since=since, until=until, agent=agent):
        totals[row.kind].add(row)
    return {**totals, "cost": totals[RollupKind.MODEL].cost}


@dataclass
class MetricsOverview:
    since: datetime
    until: datetime
    bucket_seconds: int
    runs: Stats
    models_total: Stats
    tools_total: Stats
    by_agent: list[dict[str, Any]]
    by_model: list[Stats]
    by_tool: list[Stats]


def metrics_overview(*, since: datetime, until: datetime, agent: str = "") -> MetricsOverview:
    groups: dict[tuple[str, str, str], Stats] = {}
    for row in _rollups(since=since, until=until, agent=agent):
        group = (row.kind, row.agent, row.key)
        if group not in groups:
            groups[group] = Stats(kind=row.kind, agent=row.agent, key=row.key)
        groups[group].add(row)
    by_agent: dict[str, dict[str, Any]] = {}
    by_model: dict[str, Stats] = {}
    by_tool: dict[str, Stats] = {}
    runs, models_total, tools_total = Stats(kind="run"), Stats(kind="model"), Stats(kind="tool")
    for (kind, agent_slug, key), stats in groups.items():
        entry = by_agent.setdefault(
            agent_slug,
            {
                "agent": agent_slug,
                "run": Stats(kind="run", agent=agent_slug),
                "model": Stats(kind="model", agent=agent_slug),
                "tool": Stats(kind="tool", agent=agent_slug),
            },
        )
        entry[kind].add(stats)
        if kind == RollupKind.RUN:
            runs.add(stats)
        elif kind == RollupKind.MODEL:
            models_total.add(stats)
            by_model.setdefault(key, Stats(kind=kind, key=key)).add(stats)
        else:
            tools_total.add(stats)
            by_tool.setdefault(key, Stats(kind=kind, key=key)).add(stats)
    return MetricsOverview(
        since=since,
        until=until,
        bucket_seconds=rollup_bucket_for(since=since, until=until),
        runs=runs,
        models_total=models_total,
        tools_total=tools_total,
        by_agent=sorted(by_agent.values(), key=lambda e: e["agent"]),
        by_model=sorted(by_model.values(), key=lambda s: (-s.count, s.key)),
        by_tool=sorted(by_tool.values(), key=lambda s: (-s.count, s.key)),
    )


@dataclass
class SeriesPoint:
    start: datetime
    runs: Stats
    models: Stats
    tools: Stats


def metrics_series(
    *, since: datetime, until: datetime, agent: str = "", points: int = 48
) -> list[SeriesPoint]:
    """The window cut into about `points` equal slots (whole rollup buckets each)."""
    seconds = rollup_bucket_for(since=since, until=until)
    span = max((until - since).total_seconds(), seconds)
    slot = max(seconds, int(-(-span // points) // seconds * seconds) or seconds)
    first = int(since.timestamp()) // slot * slot
    count = int((until.timestamp() - first) // slot) + 1
    series = [
        SeriesPoint(
            datetime.fromtimestamp(first + i * slot, tz=since.tzinfo),
            Stats(kind="run"),
            Stats(kind="model"),
            Stats(kind="tool"),
        )
        for i in range(count)
    ]
    for row in _rollups(since=since, until=until, agent=agent):
        index = int((row.start.timestamp() - first) // slot)
        if 0 <= index < count:
            point = series[index]
            {"run": point.runs, "model": point.models, "tool": point.tools}[row.kind].add(row)
    return series


def rollup_agents() -> list[str]:
    return list(
        MetricRollup.objects.filter(bucket_seconds=0)
        .exclude(agent="")
        .values_list("agent", flat=True)
        .distinct()
        .order_by("agent")
    )


# --- alerts ---------------------------------------------------------------------------------


def alerts_firing() -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(firing=True, enabled=True).order_by("name")


def alert_events_recent(*, limit: int = 100) -> QuerySet[AlertEvent]:
    return AlertEvent.objects.select_related("rule").order_by("-created_at", "-id")[:limit]


# --- storage --------------------------------------------------------------------------------


@dataclass
class TableSize:
    table: str
    holds: str
    rows: int
    total_bytes: int
    table_bytes: int
    index_bytes: int


def storage_tables() -> list[TableSize]:
    """Every table of the database with its (estimated) rows and size on disk, largest first."""
    models_by_table = {m._meta.db_table: m for m in apps.get_models(include_auto_created=True)}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname,
                   GREATEST(COALESCE(s.n_live_tup, 0), c.reltuples::bigint, 0),
                   pg_total_relation_size(c.oid), pg_relation_size(c.oid), pg_indexes_size(c.oid)
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
            WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()
            ORDER BY pg_total_relation_size(c.oid) DESC, c.relname
            """
        )
        rows = cursor.fetchall()
    out = []
    for name, count, total, table, index in rows:
        model = models_by_table.get(name)
        holds = f"{model._meta.app_label}: {model._meta.verbose_name_plural}" if model else ""
        out.append(TableSize(name, holds, int(count), int(total), int(table), int(index)))
    return out
