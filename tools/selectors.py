from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Aggregate, Count, FloatField, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from tools.access import ToolCaller, tool_access
from tools.models import Credential, McpServer, ToolDefinition, ToolVersion
from tools.registry import registered_tools
from tracing.models import Span, SpanStatus

TOOL_SPAN = "tool.call"
TOOL_NAME_ATTRIBUTE = "gen_ai.tool.name"
STATS_WINDOW = timedelta(days=30)


class PercentileCont(Aggregate):
    function = "PERCENTILE_CONT"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, percentile: float) -> None:
        super().__init__(expression, percentile=float(percentile))


@dataclass
class ToolStats:
    calls: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    last_failures: list[Span] = field(default_factory=list)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None


def _tool_spans(since: datetime) -> QuerySet[Span]:
    return Span.objects.filter(name=TOOL_SPAN, is_event=False, start_time__gte=since)


def tool_stats(*, tool: ToolDefinition, window: timedelta = STATS_WINDOW) -> ToolStats:
    """Calls, errors, latency percentiles and the last failures of a tool, from its spans."""
    spans = _tool_spans(timezone.now() - window).filter(
        **{f"attributes__{TOOL_NAME_ATTRIBUTE}": tool.name}
    )
    row = spans.aggregate(
        calls=Count("id"),
        errors=Count("id", filter=Q(status=SpanStatus.ERROR)),
        p50=PercentileCont("duration_ms", 0.5),
        p95=PercentileCont("duration_ms", 0.95),
    )
    failures = list(spans.filter(status=SpanStatus.ERROR).order_by("-start_time")[:10])
    return ToolStats(
        calls=row["calls"],
        errors=row["errors"],
        p50_ms=row["p50"],
        p95_ms=row["p95"],
        last_failures=failures,
    )


def tool_stats_by_name(*, window: timedelta = STATS_WINDOW) -> dict[str, ToolStats]:
    """Calls and error counts of every tool (one query), for the tool list."""
    rows = (
        _tool_spans(timezone.now() - window)
        .annotate(tool_name=KeyTextTransform(TOOL_NAME_ATTRIBUTE, "attributes"))
        .values("tool_name")
        .annotate(
            calls=Count("id"),
            errors=Count("id", filter=Q(status=SpanStatus.ERROR)),
            p95=PercentileCont("duration_ms", 0.95),
        )
    )
    return {
        r["tool_name"]: ToolStats(calls=r["calls"], errors=r["errors"], p95_ms=r["p95"])
        for r in rows
    }


@dataclass(frozen=True)
class ToolRow:
    """A line of the tool list: the tool, how many agents may call it, and its calls in the
    stats window (None: no calls)."""

    tool: ToolDefinition
    agent_count: int
    stats: ToolStats | None


def tool_list() -> list[ToolRow]:
    """Every tool by name, with the agents that may call it and its recent calls."""
    access = tool_access()
    counts = access.counts() if access is not None else {}
    stats = tool_stats_by_name()
    tools = ToolDefinition.objects.select_related("credential", "mcp_server", "fallback")
    return [
        ToolRow(tool=tool, agent_count=counts.get(tool.pk, 0), stats=stats.get(tool.name))
        for tool in tools.order_by("name")
    ]


def tool_callers(*, tool: ToolDefinition) -> list[ToolCaller]:
    access = tool_access()
    return access.callers_of(tool_id=tool.pk) if access is not None else []


SNAPSHOT_DEFAULTS: dict[str, Any] = {
    "honours_idempotency_key": False,
    "idempotency_key_argument": "",
}


def tool_versions(*, tool: ToolDefinition) -> list[dict[str, Any]]:
    """The tool's versions, newest first, each with the fields changed from the one before."""
    versions = list(ToolVersion.objects.filter(tool=tool).order_by("version"))
    for version in versions:  # versions saved before a field existed had its default
        version.snapshot = {**SNAPSHOT_DEFAULTS, **version.snapshot}
    shown = []
    previous: dict[str, Any] | None = None
    for version in versions:
        changed = (
            sorted(
                k
                for k in set(version.snapshot) | set(previous)
                if version.snapshot.get(k) != previous.get(k)
            )
            if previous is not None
            else []
        )
        shown.append(
            {
                "version": version.version,
                "created_at": version.created_at,
                "changed": changed,
                "snapshot": version.snapshot,
            }
        )
        previous = version.snapshot
    return list(reversed(shown))


def python_function_choices() -> list[tuple[str, str]]:
    return [
        (name, f"{name} — {tool.description[:80]}")
        for name, tool in sorted(registered_tools().items())
    ]


def credential_list() -> QuerySet[Credential]:
    return Credential.objects.annotate(tool_count=Count("tooldefinition", distinct=True)).order_by(
        "name"
    )


def credential_users(*, credential: Credential) -> dict[str, list[Any]]:
    return {
        "tools": list(ToolDefinition.objects.filter(credential=credential).order_by("name")),
        "mcp_servers": list(McpServer.objects.filter(credential=credential).order_by("name")),
    }


def mcp_server_list() -> QuerySet[McpServer]:
    return (
        McpServer.objects.select_related("credential")
        .annotate(
            tool_count=Count("tooldefinition"),
            enabled_count=Count("tooldefinition", filter=Q(tooldefinition__enabled=True)),
        )
        .order_by("name")
    )


def mcp_server_tools(*, server: McpServer) -> QuerySet[ToolDefinition]:
    return ToolDefinition.objects.filter(mcp_server=server).order_by("name")
