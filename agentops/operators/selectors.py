"""Reads of the takeover queue: open and claimed handoffs, approvals, figures, audit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet

from agentops.auth import has_role
from agentops.models import (
    AuditEntry,
    Handoff,
    HandoffStatus,
    OperatorState,
    Presence,
    Run,
    Session,
    Team,
    ToolCall,
    ToolCallStatus,
)
from memory.models import Memory


def handoffs_open() -> QuerySet[Handoff]:
    """The queue: most urgent first (1 is most urgent), then the longest waiting."""
    return (
        Handoff.objects.filter(status=HandoffStatus.OPEN)
        .select_related("session__agent", "run", "team")
        .order_by("priority", "created_at")
    )


def handoffs_open_for(*, user: Any) -> QuerySet[Handoff]:
    """The queue a person sees: an operator their teams' handoffs and those of no team (all
    of them when in no team); an admin every one."""
    qs = handoffs_open()
    if has_role(user, "admin"):
        return qs
    team_ids = list(Team.objects.filter(members__pk=user.pk).values_list("pk", flat=True))
    return qs.filter(Q(team_id__in=team_ids) | Q(team__isnull=True)) if team_ids else qs


def operator_user_ids(*, team: Team) -> list[int]:
    """The team's members who may be given conversations: active operators and admins."""
    members = team.members.filter(is_active=True).filter(
        Q(groups__name__in=["operator", "admin"]) | Q(is_superuser=True)
    )
    return sorted(set(members.values_list("pk", flat=True)))


def operator_loads(*, user_ids: list[int]) -> dict[int, int]:
    """How many conversations each person holds now (claimed handoffs), 0 for none."""
    held = dict(
        Handoff.objects.filter(status=HandoffStatus.CLAIMED, claimed_by_id__in=user_ids)
        .values("claimed_by_id")
        .annotate(n=Count("id"))
        .values_list("claimed_by_id", "n")
    )
    return {pk: held.get(pk, 0) for pk in user_ids}


def operator_presence(*, user: Any) -> str:
    state = OperatorState.objects.filter(user_id=user.pk).values_list("presence", flat=True)
    return state.first() or Presence.OFFLINE


@dataclass(frozen=True)
class SlaTimer:
    """The clock a handoff runs against now; the page turns it amber at AMBER_AT of the
    target and red past it (static/operators/sla.js)."""

    kind: str  # "first response" or "resolution"
    start: datetime
    due: datetime
    breached: bool

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def due_ms(self) -> int:
        return int(self.due.timestamp() * 1000)


AMBER_AT = 0.75


def handoff_sla_timer(*, handoff: Handoff) -> SlaTimer | None:
    """Open or claimed and not answered yet: the first-response target; answered: the
    resolution target; none for a team without targets or a resolved handoff."""
    team = handoff.team
    if team is None or handoff.status == HandoffStatus.RESOLVED:
        return None
    if team.first_response_minutes and handoff.first_response_at is None:
        due = handoff.created_at + timedelta(minutes=team.first_response_minutes)
        breached = handoff.first_response_breached_at is not None
        return SlaTimer("first response", handoff.created_at, due, breached)
    if team.resolution_minutes:
        due = handoff.created_at + timedelta(minutes=team.resolution_minutes)
        breached = handoff.resolution_breached_at is not None
        return SlaTimer("resolution", handoff.created_at, due, breached)
    return None


def handoffs_in_breach_count(*, agent: str = "") -> int:
    """Handoffs not resolved yet with a stored breach (of one agent, or "" of all)."""
    qs = Handoff.objects.exclude(status=HandoffStatus.RESOLVED).filter(
        Q(first_response_breached_at__isnull=False) | Q(resolution_breached_at__isnull=False)
    )
    if agent:
        qs = qs.filter(session__agent__slug=agent)
    return qs.count()


def sla_figures(*, since: datetime) -> dict[str, Any]:
    """Service-level breaches per team whose deadline fell in the window, beside the
    handoffs that arrived in it."""
    rows = []
    for team in Team.objects.filter(
        Q(first_response_minutes__isnull=False) | Q(resolution_minutes__isnull=False)
    ).order_by("slug"):
        handoffs = Handoff.objects.filter(team=team)
        rows.append(
            {
                "team": team,
                "handoffs": handoffs.filter(created_at__gte=since).count(),
                "first_response": handoffs.filter(first_response_breached_at__gte=since).count(),
                "resolution": handoffs.filter(resolution_breached_at__gte=since).count(),
            }
        )
    return {
        "teams": rows,
        "first_response": Handoff.objects.filter(first_response_breached_at__gte=since).count(),
        "resolution": Handoff.objects.filter(resolution_breached_at__gte=since).count(),
    }


def handoffs_claimed(*, user: Any) -> QuerySet[Handoff]:
    """Handoffs being worked: an operator's own; every operator's for admins."""
    qs = (
        Handoff.objects.filter(status=HandoffStatus.CLAIMED)
        .select_related("session__agent", "claimed_by", "run", "team")
        .order_by("priority", "claimed_at")
    )
    return qs if has_role(user, "admin") else qs.filter(claimed_by=user)


def handoff_get(*, handoff_id: int) -> Handoff | None:
    return (
        Handoff.objects.select_related("session__agent", "claimed_by", "run", "team")
        .filter(pk=handoff_id)
        .first()
    )


def approvals_pending() -> QuerySet[ToolCall]:
    return (
        ToolCall.objects.filter(status=ToolCallStatus.AWAITING_APPROVAL)
        .select_related("run__agent", "run__session")
        .order_by("started_at")
    )


def user_memories(*, session: Session, limit: int = 100) -> list[Memory]:
    """The end user's long-term memories with this agent (read-only for operators)."""
    if not session.external_user:
        return []
    return list(
        Memory.objects.filter(agent_id=session.agent_id, user_key=session.external_user)
        .defer("embedding")
        .order_by("-pinned", "-importance", "-created_at")[:limit]
    )


def operators_list() -> list[Any]:
    from django.contrib.auth import get_user_model

    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=["operator", "admin"]) | Q(is_superuser=True))
    )
    return list(users.distinct().order_by("username"))


def _percentiles(sql_interval: str, where: str, params: list[Any]) -> tuple[Any, Any, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM {sql_interval})),
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM {sql_interval})),
                   count(*)
              FROM agentops_handoff
             WHERE {where}
            """,  # noqa: S608 - fixed fragments, values are parameters
            params,
        )
        p50, p95, n = cursor.fetchone()
    return p50, p95, n


def handoff_figures(*, since: datetime) -> dict[str, Any]:
    """Handoff rate per agent, time to pickup and to resolve (p50/p95), how they ended."""
    pickup = _percentiles(
        "claimed_at - created_at", "claimed_at IS NOT NULL AND created_at >= %s", [since]
    )
    resolve = _percentiles(
        "resolved_at - created_at", "resolved_at IS NOT NULL AND created_at >= %s", [since]
    )
    runs = dict(
        Run.objects.filter(created_at__gte=since)
        .values("agent__slug")
        .annotate(n=Count("id"))
        .values_list("agent__slug", "n")
    )
    handoffs = dict(
        Handoff.objects.filter(created_at__gte=since)
        .values("session__agent__slug")
        .annotate(n=Count("id"))
        .values_list("session__agent__slug", "n")
    )
    rates = [
        {
            "agent": slug,
            "runs": runs.get(slug, 0),
            "handoffs": handoffs.get(slug, 0),
            "rate": (handoffs.get(slug, 0) / runs[slug]) if runs.get(slug) else None,
        }
        for slug in sorted(set(runs) | set(handoffs))
    ]
    outcomes = dict(
        Handoff.objects.filter(created_at__gte=since, status=HandoffStatus.RESOLVED)
        .values("resolution")
        .annotate(n=Count("id"))
        .values_list("resolution", "n")
    )
    return {
        "rates": rates,
        "pickup": {"p50": pickup[0], "p95": pickup[1], "count": pickup[2]},
        "resolve": {"p50": resolve[0], "p95": resolve[1], "count": resolve[2]},
        "closed": outcomes.get("closed", 0),
        "handed_back": outcomes.get("handed_back", 0),
    }


def audit_entries(
    *, action: str = "", actor: str = "", session_id: Any = None, since: datetime | None = None
) -> QuerySet[AuditEntry]:
    qs = AuditEntry.objects.select_related("actor", "session__agent").order_by("-created_at")
    if action:
        qs = qs.filter(action=action)
    if actor:
        qs = qs.filter(actor__username=actor)
    if session_id:
        qs = qs.filter(session_id=session_id)
    if since:
        qs = qs.filter(created_at__gte=since)
    return qs


def audit_actions() -> list[str]:
    return list(AuditEntry.objects.values_list("action", flat=True).distinct().order_by("action"))
