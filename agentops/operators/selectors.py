"""Reads of the takeover queue: open and claimed handoffs, approvals, figures, audit."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from agentops.auth import has_role
from agentops.models import (
    AuditEntry,
    Handoff,
    HandoffStatus,
    Message,
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


# The queue's filters (agentops/operators/views.py reads them from the query string).
QUEUE_STATUSES = ("open", "claimed", "resolved", "any")
QUEUE_WAITING = {"5m": 5 * 60, "15m": 15 * 60, "1h": 3600, "4h": 4 * 3600, "24h": 24 * 3600}
QUEUE_PAGE_SIZE = 50


def handoffs_queue(
    *,
    user: Any,
    status: str = "open",
    team: str = "",
    waiting: str = "",
    q: str = "",
    labels: tuple[str, ...] = (),
) -> QuerySet[Handoff]:
    """The queue's list under its filters: `team` a team slug ("none": no team), `waiting`
    a key of QUEUE_WAITING (waiting at least that long), `q` searched in the conversation's
    messages, end user and title. Claimed handoffs of other operators are for admins only.
    `labels` is the hook for conversation labels: not stored yet, so it must be empty."""
    if status not in QUEUE_STATUSES:
        raise ValueError(f"status: choose one of {', '.join(QUEUE_STATUSES)}")
    if waiting and waiting not in QUEUE_WAITING:
        raise ValueError(f"waiting: choose one of {', '.join(QUEUE_WAITING)}")
    if labels:
        raise ValueError("label: conversations have no labels yet")
    qs = Handoff.objects.select_related("session__agent", "claimed_by", "run", "team")
    if status == "any":
        qs = qs.order_by("-created_at")
    elif status == "resolved":
        qs = qs.filter(status=HandoffStatus.RESOLVED).order_by("-resolved_at")
    else:
        qs = qs.filter(status=status).order_by("priority", "created_at")
    if not has_role(user, "admin"):
        qs = qs.exclude(Q(status=HandoffStatus.CLAIMED) & ~Q(claimed_by=user.pk))
    if team == "none":
        qs = qs.filter(team__isnull=True)
    elif team:
        qs = qs.filter(team__slug=team)
    if waiting:
        cutoff = timezone.now() - timedelta(seconds=QUEUE_WAITING[waiting])
        qs = qs.filter(created_at__lte=cutoff)
    q = q.strip()
    if q:
        said = (
            Message.objects.filter(session_id=OuterRef("session_id"))
            .annotate(text=SearchVector("content", config="simple"))
            .filter(text=search_query(q))
        )
        qs = qs.filter(
            Q(session__title__icontains=q)
            | Q(session__external_user__icontains=q)
            | Exists(said)
            | Q(reason__icontains=q)
        )
    return qs


def search_query(q: str) -> SearchQuery:
    """Every word of `q` as a prefix ("refun" finds "refund"), in the `simple` configuration
    (no stemming, any language) of the messages' full-text index."""
    words = re.findall(r"\w+", q)[:20]
    if not words:
        return SearchQuery("", config="simple")
    return SearchQuery(" & ".join(f"{w}:*" for w in words), config="simple", search_type="raw")


def teams_all() -> list[Team]:
    return list(Team.objects.order_by("slug"))


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


def _queue_of(user: Any) -> tuple[str, list[Any]]:
    """SQL condition (on `h`, the handoff) for an open handoff being in `user`'s queue: for
    admins and operators in no team, every open handoff; otherwise those of their teams and
    those sent to no team."""
    if has_role(user, "admin"):
        return "TRUE", []
    return (
        """(h.team_id IS NULL
            OR NOT EXISTS (SELECT 1 FROM agentops_team_members m WHERE m.user_id = %s)
            OR h.team_id IN (SELECT m.team_id FROM agentops_team_members m WHERE m.user_id = %s))""",
        [user.pk, user.pk],
    )


def unread_counts(*, user: Any) -> dict[str, int]:
    """What the operator has not seen, in one query: handoffs in their queue (or claimed by
    them) they have not opened, and end-user messages in their claimed conversations written
    after their read marker (or, never opened, after the handoff)."""
    if not has_role(user, "operator"):
        return {"handoffs": 0, "messages": 0, "total": 0}
    in_queue, params = _queue_of(user)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT
              (SELECT count(*) FROM agentops_handoff h
                WHERE ((h.status = 'open' AND {in_queue})
                       OR (h.status = 'claimed' AND h.claimed_by_id = %s))
                  AND NOT EXISTS (SELECT 1 FROM agentops_handoffread r
                                   WHERE r.handoff_id = h.id AND r.user_id = %s)),
              (SELECT count(*) FROM agentops_handoff h
                 JOIN agentops_message msg ON msg.session_id = h.session_id
                 LEFT JOIN agentops_handoffread r ON r.handoff_id = h.id AND r.user_id = %s
                WHERE h.status = 'claimed' AND h.claimed_by_id = %s AND msg.role = 'user'
                  AND CASE WHEN r.id IS NULL THEN msg.created_at > h.created_at
                           ELSE msg.seq > r.last_seq END)
            """,  # noqa: S608 - a fixed fragment, values are parameters
            [*params, user.pk, user.pk, user.pk, user.pk],
        )
        handoffs, messages = cursor.fetchone()
    return {"handoffs": handoffs, "messages": messages, "total": handoffs + messages}


def notification_sound(*, user: Any) -> bool:
    from agentops.models import NotificationSettings

    return NotificationSettings.objects.filter(user=user.pk, sound=True).exists()
