"""Reads of the takeover queue: open and claimed handoffs, approvals, figures, audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet

from agentops.auth import has_role
from agentops.models import (
    AuditEntry,
    Handoff,
    HandoffStatus,
    Run,
    Session,
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
