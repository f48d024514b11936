"""Reads of the agent builder: agents with their figures, versions, diffs, per-version
comparison, and the draft chat's context window."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import (
    Aggregate,
    Avg,
    Count,
    F,
    FloatField,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.expressions import Combinable
from django.utils import timezone

from agentops.agent_config import ROUTE_KEYS, SCALAR_FIELDS, snapshot_complete
from agentops.guardrails.spec import guardrail_describe
from agentops.models import (
    Agent,
    AgentVersion,
    Feedback,
    FeedbackRating,
    ModelEndpoint,
    Run,
    RunStatus,
    Session,
    Team,
)
from agentops.selectors import RunOutcomes, run_outcomes
from tools.models import ToolDefinition
from tracing.platform.types import SessionId
from tracing.rollups import PriceBook

LABELS = {
    "name": "Name",
    "endpoint": "Model endpoint",
    "model": "Model",
    "fallbacks": "Fallbacks",
    "system_prompt": "Instructions",
    "temperature": "Temperature",
    "tools": "Tools",
    "max_steps": "Max steps",
    "context_token_budget": "Context budget (tokens)",
    "memory_enabled": "Memory",
    "recall_k": "Memories recalled per turn",
    "retry_max_attempts": "Retry attempts",
    "retry_base_seconds": "Retry base delay (s)",
    "retry_cap_seconds": "Retry delay cap (s)",
    "handoff_team": "Handoff team",
    "builtins_off": "Built-in tools turned off",
    "guardrails": "Guardrails",
    "transfers": "Transfers",
    "agent_tools": "Agents called as tools",
    "run_max_cost": "Max cost per run (USD)",
    "run_max_tokens": "Max tokens per run",
    "run_max_tool_calls": "Max tool calls per run",
    "run_max_seconds": "Max wall time per run (s)",
}
FIELD_ORDER = (
    "name",
    "endpoint",
    "model",
    "fallbacks",
    "system_prompt",
    "temperature",
    "tools",
    "builtins_off",
    "guardrails",
    "transfers",
    "agent_tools",
    *(f for f in SCALAR_FIELDS if f not in ("name", "model", "system_prompt", "temperature")),
    "handoff_team",
)


# --- agents ---------------------------------------------------------------------------------


@dataclass
class AgentOverview:
    """An agent as the agents page lists it."""

    agent: Agent
    last_change: AgentVersion | None  # its latest saved version
    runs_today: int
    failures_today: int


def agents_overview(*, now: datetime | None = None) -> list[AgentOverview]:
    """Every agent with its published version, its latest saved change and today's runs and
    failures, in a fixed number of queries."""
    now = now or timezone.now()
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    latest = AgentVersion.objects.filter(agent=OuterRef("pk")).order_by("-number")
    agents = list(
        Agent.objects.select_related("endpoint", "published_version", "handoff_team")
        .annotate(
            runs_today=Count("runs", filter=Q(runs__created_at__gte=today)),
            failures_today=Count(
                "runs",
                filter=Q(runs__created_at__gte=today, runs__status=RunStatus.FAILED),
            ),
            last_change_id=Subquery(latest.values("pk")[:1]),
        )
        .order_by("name", "slug")
    )
    changes = AgentVersion.objects.select_related("author").in_bulk(
        [a.last_change_id for a in agents if a.last_change_id]
    )
    return [
        AgentOverview(
            agent=agent,
            last_change=changes.get(agent.last_change_id),
            runs_today=agent.runs_today,
            failures_today=agent.failures_today,
        )
        for agent in agents
    ]


def agent_get(*, slug: str) -> Agent | None:
    return (
        Agent.objects.select_related("endpoint", "published_version", "handoff_team")
        .filter(slug=slug)
        .first()
    )


def agent_latest_saved(*, agent: Agent) -> AgentVersion | None:
    """The newest version in the agent's line of saved changes (not a derived variant)."""
    return agent.versions.filter(derived_from=None).order_by("-number").first()


def endpoints_list() -> QuerySet[ModelEndpoint]:
    return ModelEndpoint.objects.order_by("name")


def tools_list() -> QuerySet[ToolDefinition]:
    return ToolDefinition.objects.order_by("name")


# --- versions -------------------------------------------------------------------------------


def versions_list(*, agent: Agent) -> list[AgentVersion]:
    return list(agent.versions.select_related("author", "derived_from").order_by("-number"))


def version_get(*, agent: Agent, number: int) -> AgentVersion | None:
    return agent.versions.select_related("author", "derived_from").filter(number=number).first()


def version_previous(*, version: AgentVersion) -> AgentVersion | None:
    """What a version's diff is against: the version it was derived from, else the saved
    version before it."""
    if version.derived_from_id:
        return version.derived_from
    return (
        AgentVersion.objects.filter(
            agent_id=version.agent_id, derived_from=None, number__lt=version.number
        )
        .order_by("-number")
        .first()
    )


@dataclass
class FieldChange:
    name: str
    label: str
    before: str
    after: str
    lines: list[str] = field(default_factory=list)  # a unified diff, for long text


class _Names:
    """Ids in snapshots resolved to names (one query per kind, for every version at once)."""

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        endpoint_ids: set[int] = {c["endpoint"] for c in configs if c.get("endpoint")}
        endpoint_ids |= {
            f["endpoint"] for c in configs for f in c.get("fallbacks", []) if f.get("endpoint")
        }
        self.endpoints = dict(
            ModelEndpoint.objects.filter(pk__in=endpoint_ids).values_list("pk", "name")
        )
        self.tools = dict(
            ToolDefinition.objects.filter(
                pk__in={t for c in configs for t in c.get("tools", [])}
            ).values_list("pk", "name")
        )
        team_ids: list[int] = [c["handoff_team"] for c in configs if c.get("handoff_team")]
        self.teams = dict(Team.objects.filter(pk__in=team_ids).values_list("pk", "slug"))

    def endpoint(self, pk: int | None) -> str:
        known = self.endpoints.get(pk) if pk is not None else None
        return known or f"#{pk} (deleted)"

    def show(self, name: str, config: dict[str, Any]) -> str:
        value = config.get(name)
        if name == "endpoint":
            return self.endpoint(value)
        if name == "handoff_team":
            return self.teams.get(value, f"#{value} (deleted)") if value else "none"
        if name == "tools":
            return ", ".join(sorted(self.tools.get(t, f"#{t} (deleted)") for t in value or []))
        if name == "fallbacks":
            return ", ".join(
                f"{self.endpoint(f['endpoint'])}:{f['model'] or 'default model'}"
                for f in value or []
            )
        if name == "model":
            return value or "the endpoint's default"
        if name == "temperature":
            return "the model's default" if value is None else str(value)
        if name == "memory_enabled":
            return "on" if value else "off"
        if name == "builtins_off":
            return ", ".join(value or []) or "none"
        if name == "guardrails":
            return "; ".join(guardrail_describe(g) for g in value or []) or "none"
        if name == "agent_tools":
            return ", ".join(t["agent"] for t in value or []) or "none"
        if name == "transfers":
            return (
                "; ".join(
                    f"{t['agent']} ({t['history']}"
                    + (f" {t['turns']}" if t.get("turns") else "")
                    + (f"; when {_when_describe(t['when'])}" if t.get("when") else "")
                    + ")"
                    for t in value or []
                )
                or "none"
            )
        if name.startswith("run_max_"):
            return "no limit" if value is None else str(value)
        return "" if value is None else str(value)


def _when_describe(when: dict[str, Any]) -> str:
    """A transfer's routing rules in a diff, in a fixed order: `pattern (?i)invoice, classifier`."""
    return ", ".join(
        "classifier" if key == "classify" else f"{key} {when[key]}"
        for key in ROUTE_KEYS
        if key in when
    )


def _changes(names: _Names, before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
    out = []
    if before:  # a version saved before a field existed has its default
        before = snapshot_complete(before)
    after = snapshot_complete(after)
    for name in FIELD_ORDER:
        if before.get(name) == after.get(name):
            continue
        change = FieldChange(
            name, LABELS.get(name, name), names.show(name, before), names.show(name, after)
        )
        if name == "system_prompt":
            change.lines = list(
                difflib.unified_diff(
                    str(before.get(name) or "").splitlines(),
                    str(after.get(name) or "").splitlines(),
                    "before",
                    "after",
                    lineterm="",
                )
            )[2:]
        out.append(change)
    return out


def version_diff(
    *, version: AgentVersion, against: AgentVersion | None = None
) -> list[FieldChange]:
    """Readable per-field changes from `against` (default: `version_previous`) to `version`.
    The first version is diffed against an empty agent: every set field shows."""
    base = against if against is not None else version_previous(version=version)
    before = base.config if base is not None else {}
    names = _Names([before, version.config])
    return _changes(names, before, version.config)


@dataclass
class VersionRow:
    version: AgentVersion
    against: AgentVersion | None
    changes: list[FieldChange]


def versions_with_diffs(*, agent: Agent) -> list[VersionRow]:
    """Every version of the agent, newest first, with its diff against `version_previous`
    (computed together: a fixed number of queries however many versions there are)."""
    versions = versions_list(agent=agent)
    by_pk = {v.pk: v for v in versions}
    names = _Names([v.config for v in versions])
    saved = sorted((v for v in versions if v.derived_from_id is None), key=lambda v: v.number)
    rows = []
    for version in versions:
        if version.derived_from_id:
            against = by_pk.get(version.derived_from_id) or version.derived_from
        else:
            earlier = [v for v in saved if v.number < version.number]
            against = earlier[-1] if earlier else None
        before = against.config if against is not None else {}
        rows.append(VersionRow(version, against, _changes(names, before, version.config)))
    return rows


def version_settings(*, version: AgentVersion) -> list[tuple[str, str]]:
    """The version's settings as (label, readable value)."""
    names = _Names([version.config])
    return [(LABELS.get(n, n), names.show(n, version.config)) for n in FIELD_ORDER]


# --- per-version figures ----------------------------------------------------------------------


class Percentile(Aggregate):
    function = "percentile_cont"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Combinable, percentile: float) -> None:
        super().__init__(expression, percentile=float(percentile))


def _latency_ms() -> Func:
    return Func(
        F("finished_at") - F("started_at"),
        template="EXTRACT(EPOCH FROM %(expressions)s) * 1000",
        output_field=FloatField(),
    )


@dataclass
class VersionFigures:
    version: AgentVersion | None
    runs: int = 0
    outcomes: RunOutcomes = field(default_factory=RunOutcomes)  # agentops.selectors owns them
    p50_ms: float | None = None
    p95_ms: float | None = None
    tokens: int = 0
    cost: Decimal = Decimal(0)
    feedback: int = 0
    thumbs_up: int = 0
    mean_score: float | None = None

    @property
    def success_rate(self) -> float | None:
        return self.outcomes.success_rate

    @property
    def handoff_rate(self) -> float | None:
        return self.outcomes.handoff_rate

    @property
    def thumbs_up_rate(self) -> float | None:
        return self.thumbs_up / self.feedback if self.feedback else None


def version_figures(
    *,
    agent: Agent,
    since: datetime | None = None,
    version: int | None = None,
    include_idle: bool = True,
) -> list[VersionFigures]:
    """Per agent version, newest first: runs, outcome rates, latency percentiles, tokens,
    estimated cost and feedback. Runs from before versions count under `version=None`.
    Sandbox runs are left out: these are the figures of real conversations. The outcome
    rates are `agentops.selectors.run_outcomes`, as on every other page."""
    runs = Run.objects.production().filter(agent=agent)
    feedback = Feedback.objects.filter(run__agent=agent)
    if since is not None:
        runs = runs.filter(created_at__gte=since)
        feedback = feedback.filter(run__created_at__gte=since)
    versions = {v.pk: v for v in agent.versions.select_related("author")}
    if version is not None:
        runs = runs.filter(agent_version__number=version)
        feedback = feedback.filter(run__agent_version__number=version)
        versions = {k: v for k, v in versions.items() if v.number == version}
    rows: dict[int | None, VersionFigures] = {}

    def row(key: int | None) -> VersionFigures:
        if key not in rows:
            rows[key] = VersionFigures(versions.get(key) if key is not None else None)
        return rows[key]

    for r in runs.values("agent_version").annotate(
        n=Count("pk"),
        p50=Percentile(_latency_ms(), 0.5),
        p95=Percentile(_latency_ms(), 0.95),
        tokens=Sum(F("tokens_in") + F("tokens_out")),
    ):
        figures = row(r["agent_version"])
        figures.runs, figures.p50_ms, figures.p95_ms = r["n"], r["p50"], r["p95"]
        figures.tokens = r["tokens"] or 0
    for key, outcomes in run_outcomes(
        agent=agent.slug, since=since, version=version, by="agent_version"
    ).items():
        row(key).outcomes = outcomes
    prices = PriceBook()
    for c in runs.values("agent_version", "model_used").annotate(
        tin=Sum("tokens_in"), tout=Sum("tokens_out")
    ):
        row(c["agent_version"]).cost += prices.cost(c["model_used"], c["tin"] or 0, c["tout"] or 0)
    for f in feedback.values("run__agent_version").annotate(
        n=Count("pk"),
        up=Count("pk", filter=Q(rating=FeedbackRating.UP)),
        mean=Avg("score"),
    ):
        figures = row(f["run__agent_version"])
        figures.feedback, figures.thumbs_up, figures.mean_score = f["n"], f["up"], f["mean"]
    if include_idle:
        for key in versions:
            row(key)
    return sorted(rows.values(), key=lambda f: -(f.version.number if f.version is not None else 0))


# --- the draft chat -------------------------------------------------------------------------


def draft_session_get(*, agent: Agent, session_id: SessionId | None) -> Session | None:
    if not session_id:
        return None
    return (
        Session.objects.select_related("agent", "agent_version", "operator")
        .filter(pk=session_id, agent=agent, agent_version__isnull=False)
        .first()
    )
