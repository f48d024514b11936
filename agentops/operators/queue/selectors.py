"""Reads of the queue: open, claimed and snoozed handoffs under the list's filters, one
handoff, SLA timers and breaches, the queue's figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from agentops.auth import has_role
from agentops.models import Handoff, HandoffStatus, Message, Team
from agentops.operators.access import user_pk
from tracing.platform.types import RequestUser


def _labelled(qs: QuerySet[Handoff], label: str) -> QuerySet[Handoff]:
    """Handoffs whose conversation has the label named `label` (any case); all if empty."""
    if label:
        qs = qs.filter(session__labels__name__iexact=label)
    return qs.prefetch_related("session__labels")


def handoffs_open(*, label: str = "") -> QuerySet[Handoff]:
    """The queue: most urgent first (1 is most urgent), then the longest waiting. Snoozed
    handoffs are not in it (handoffs_snoozed)."""
    qs = (
        Handoff.objects.filter(status=HandoffStatus.OPEN, snoozed_at__isnull=True)
        .select_related("session__agent", "run", "team")
        .order_by("priority", "created_at")
    )
    return _labelled(qs, label)


def handoffs_open_for(*, user: RequestUser, label: str = "") -> QuerySet[Handoff]:
    """The queue a person sees: an operator their teams' handoffs and those of no team (all
    of them when in no team); an admin every one."""
    qs = handoffs_open(label=label)
    if has_role(user, "admin"):
        return qs
    team_ids = list(Team.objects.filter(members__pk=user_pk(user)).values_list("pk", flat=True))
    return qs.filter(Q(team_id__in=team_ids) | Q(team__isnull=True)) if team_ids else qs


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


def sla_breaches(agent: str) -> float:
    """The SLA-breaches alert gauge (tracing.alerts): handoffs (of one agent, or of all) not
    resolved yet that breached a first response or resolution target; a rule on it fires
    while any is left unresolved."""
    return float(handoffs_in_breach_count(agent=agent))


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


# The queue's filters (agentops/operators/queue/views.py reads them from the query string).
QUEUE_STATUSES = ("open", "claimed", "resolved", "any")
QUEUE_WAITING = {"5m": 5 * 60, "15m": 15 * 60, "1h": 3600, "4h": 4 * 3600, "24h": 24 * 3600}
QUEUE_PAGE_SIZE = 50


def handoffs_queue(
    *,
    user: RequestUser,
    status: str = "open",
    team: str = "",
    waiting: str = "",
    q: str = "",
    label: str = "",
) -> QuerySet[Handoff]:
    """The queue's list under its filters: `team` a team slug ("none": no team), `waiting`
    a key of QUEUE_WAITING (waiting at least that long), `q` searched in the conversation's
    messages, end user and title, `label` a conversation label's name. Claimed handoffs of
    other operators are for admins only; an operator in teams sees their teams' open
    handoffs and those sent to no team (as `handoffs_open_for`). Snoozed ones are listed
    apart (`handoffs_snoozed`)."""
    if status not in QUEUE_STATUSES:
        raise ValueError(f"status: choose one of {', '.join(QUEUE_STATUSES)}")
    if waiting and waiting not in QUEUE_WAITING:
        raise ValueError(f"waiting: choose one of {', '.join(QUEUE_WAITING)}")
    qs = Handoff.objects.select_related("session__agent", "claimed_by", "run", "team")
    if status in ("open", "claimed"):
        qs = qs.filter(snoozed_at__isnull=True)
    if status == "any":
        qs = qs.order_by("-created_at")
    elif status == "resolved":
        qs = qs.filter(status=HandoffStatus.RESOLVED).order_by("-resolved_at")
    else:
        qs = qs.filter(status=status).order_by("priority", "created_at")
    if not has_role(user, "admin"):
        qs = qs.exclude(Q(status=HandoffStatus.CLAIMED) & ~Q(claimed_by=user.pk))
        team_ids = list(Team.objects.filter(members__pk=user_pk(user)).values_list("pk", flat=True))
        if team_ids:
            qs = qs.exclude(
                Q(status=HandoffStatus.OPEN) & Q(team__isnull=False) & ~Q(team_id__in=team_ids)
            )
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
    return _labelled(qs, label)


def search_query(q: str) -> SearchQuery:
    """Every word of `q` as a prefix ("refun" finds "refund"), in the `simple` configuration
    (no stemming, any language) of the messages' full-text index."""
    words = re.findall(r"\w+", q)[:20]
    if not words:
        return SearchQuery("", config="simple")
    return SearchQuery(" & ".join(f"{w}:*" for w in words), config="simple", search_type="raw")


def handoffs_claimed(*, user: RequestUser, label: str = "") -> QuerySet[Handoff]:
    """Handoffs being worked: an operator's own; every operator's for admins. Not snoozed."""
    qs = (
        Handoff.objects.filter(status=HandoffStatus.CLAIMED, snoozed_at__isnull=True)
        .select_related("session__agent", "claimed_by", "run", "team")
        .order_by("priority", "claimed_at")
    )
    return _labelled(
        qs if has_role(user, "admin") else qs.filter(claimed_by_id=user_pk(user)), label
    )


def handoffs_snoozed(*, user: RequestUser, label: str = "") -> QuerySet[Handoff]:
    """Snoozed handoffs: open ones, and claimed ones the user holds (all for admins); those
    waking first come first, those waiting for the user last."""
    qs = Handoff.objects.filter(snoozed_at__isnull=False).exclude(status=HandoffStatus.RESOLVED)
    if not has_role(user, "admin"):
        qs = qs.filter(Q(status=HandoffStatus.OPEN) | Q(claimed_by=user))
    qs = qs.select_related("session__agent", "claimed_by", "team").order_by(
        F("snoozed_until").asc(nulls_last=True), "snoozed_at"
    )
    return _labelled(qs, label)


def handoff_get(*, handoff_id: int) -> Handoff | None:
    return (
        Handoff.objects.select_related("session__agent", "claimed_by", "run", "team")
        .filter(pk=handoff_id)
        .first()
    )


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
    from agentops.selectors import run_outcomes  # it imports us

    # The handoff rate is the one every page shows (finished runs handed off), not a count of
    # handoff rows over runs started: a takeover of an idle conversation has no run.
    rates = [
        {
            "agent": slug,
            "runs": outcomes.finished,
            "handoffs": outcomes.handed_off,
            "rate": outcomes.handoff_rate,
        }
        for slug, outcomes in sorted(run_outcomes(since=since, by="agent__slug").items())
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


def notification_sound(*, user: RequestUser) -> bool:
    from agentops.models import NotificationSettings

    return NotificationSettings.objects.filter(user=user.pk, sound=True).exists()
