"""Reads of the takeover queue: open and claimed handoffs, approvals, figures, audit."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Avg, Count, F, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from agentops.auth import has_role
from agentops.models import (
    ACTIVE_RUN_STATUSES,
    AuditEntry,
    Handoff,
    HandoffRating,
    HandoffStatus,
    Message,
    Role,
    Run,
    RunStatus,
    Session,
    SessionStatus,
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
    pickup = _percentiles(  # a takeover is claimed as it is made: no pickup to measure
        "claimed_at - created_at",
        "claimed_at IS NOT NULL AND NOT taken_over AND created_at >= %s",
        [since],
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
        "taken_over": Handoff.objects.filter(created_at__gte=since, taken_over=True).count(),
    }


def handoff_rating_get(*, session_id: Any) -> HandoffRating | None:
    """The rating of the session's latest closed handoff, if the end user gave one."""
    return (
        HandoffRating.objects.filter(handoff__session_id=session_id)
        .order_by("-handoff__resolved_at")
        .first()
    )


def csat_figures(*, since: datetime) -> dict[str, list[dict[str, Any]]]:
    """CSAT of the handoffs created since `since`, per operator (who closed it), team and
    agent: ratings, the average score, and CSAT (the share of 4 and 5 scores)."""
    ratings = HandoffRating.objects.filter(handoff__created_at__gte=since)

    def per(key: str) -> list[dict[str, Any]]:
        rows = (
            ratings.values(key)
            .annotate(
                n=Count("id"), average=Avg("score"), happy=Count("id", filter=Q(score__gte=4))
            )
            .order_by(key)
        )
        return [
            {
                "name": row[key] or "(none)",
                "ratings": row["n"],
                "average": row["average"],
                "csat": row["happy"] / row["n"] if row["n"] else None,
            }
            for row in rows
        ]

    return {
        "operators": per("handoff__claimed_by__username"),
        "teams": per("handoff__team__slug"),
        "agents": per("handoff__session__agent__slug"),
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


# --- the live view: conversations in progress, with signals -------------------------------

LIVE_WINDOW = timedelta(hours=1)  # idle conversations drop off the live view after this
LIVE_LIMIT = 100
LIVE_RECENT_MESSAGES = 20  # each conversation's signals are read from its latest messages
LONG_WAIT_SECONDS = 60
TOOL_ERRORS_SIGNAL = 2


@dataclass
class LiveConversation:
    session: Session
    run: Run | None
    last: Message | None  # the latest message the end user would see (not a tool result)
    signals: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.run is not None and self.run.status in ACTIVE_RUN_STATUSES:
            return self.run.status
        return "idle"


def _normalised(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _repeated(a: str, b: str) -> bool:
    """The same question again: equal once case and punctuation are set aside, or sharing
    at least 80 % of their words."""
    a, b = _normalised(a), _normalised(b)
    if not a or not b:
        return False
    if a == b:
        return True
    words_a, words_b = set(a.split()), set(b.split())
    return len(words_a & words_b) / len(words_a | words_b) >= 0.8


def live_signals(*, messages: list[Message], run: Run | None, now: datetime) -> list[str]:
    """Why an operator might want to step in, from the conversation's latest messages (oldest
    first) and run. Each signal is a rule anyone can check by reading the conversation."""
    signals = []
    tool_errors = sum(1 for m in messages if m.role == Role.TOOL and m.content.startswith("Error"))
    if tool_errors >= TOOL_ERRORS_SIGNAL:
        signals.append(f"{tool_errors} tool errors")
    asked = [m.content for m in messages if m.role == Role.USER]
    if len(asked) >= 2 and _repeated(asked[-1], asked[-2]):
        signals.append("user asked twice")
    spoken = [
        m for m in messages if m.role in (Role.USER, Role.ASSISTANT, Role.OPERATOR) and m.content
    ]
    last = spoken[-1] if spoken else None
    if last is not None and last.role == Role.USER and last.created_at:
        waited = (now - last.created_at).total_seconds()
        if waited >= LONG_WAIT_SECONDS:
            signals.append(f"user waiting {int(waited // 60)} min {int(waited % 60)} s")
    if run is not None and run.status == RunStatus.FAILED:
        signals.append(f"run failed: {run.error_class}")
    elif run is not None and run.status == RunStatus.WAITING and run.wait_reason:
        signals.append(f"waiting: {run.wait_reason}")
    return signals


def conversations_live(*, now: datetime, agent: str = "") -> list[LiveConversation]:
    """Conversations the agents are having now (not handed off, not closed): those with a run
    in flight or active within LIVE_WINDOW; those with signals first, then the most recent."""
    sessions_qs = (
        Session.objects.filter(status=SessionStatus.ACTIVE)
        .filter(Q(updated_at__gte=now - LIVE_WINDOW) | Q(runs__status__in=ACTIVE_RUN_STATUSES))
        .select_related("agent")
        .distinct()
        .order_by("-updated_at")
    )
    if agent:
        sessions_qs = sessions_qs.filter(agent__slug=agent)
    sessions = list(sessions_qs[:LIVE_LIMIT])
    ids = [s.pk for s in sessions]
    runs = {
        r.session_id: r
        for r in Run.objects.filter(session_id__in=ids)
        .order_by("session_id", "-created_at")
        .distinct("session_id")
    }
    recent: dict[Any, list[Message]] = {pk: [] for pk in ids}
    rows = (
        Message.objects.filter(session_id__in=ids)
        .annotate(
            newest=Window(RowNumber(), partition_by=[F("session_id")], order_by=F("seq").desc())
        )
        .filter(newest__lte=LIVE_RECENT_MESSAGES)
        .defer("tool_calls")
        .order_by("session_id", "seq")
    )
    for message in rows:
        recent[message.session_id].append(message)
    out = []
    for session in sessions:
        messages = recent[session.pk]
        run = runs.get(session.pk)
        last = next((m for m in reversed(messages) if m.role != Role.TOOL and m.content), None)
        out.append(
            LiveConversation(
                session=session,
                run=run,
                last=last,
                signals=live_signals(messages=messages, run=run, now=now),
            )
        )
    out.sort(key=lambda c: len(c.signals) > 0, reverse=True)
    return out


def conversation_live(*, session: Session, now: datetime) -> LiveConversation:
    """One conversation as the live view shows it (the watch page's header)."""
    run = Run.objects.filter(session=session).order_by("-created_at").first()
    messages = list(Message.objects.filter(session=session).order_by("-seq")[:LIVE_RECENT_MESSAGES])
    messages.reverse()
    last = next((m for m in reversed(messages) if m.role != Role.TOOL and m.content), None)
    return LiveConversation(
        session=session,
        run=run,
        last=last,
        signals=live_signals(messages=messages, run=run, now=now),
    )
