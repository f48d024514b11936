"""Reads of the takeover queue: open and claimed handoffs, approvals, figures, audit."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Avg, Count, Exists, F, Max, OuterRef, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from agentops.auth import has_role
from agentops.models import (
    ACTIVE_RUN_STATUSES,
    AuditEntry,
    Handoff,
    HandoffRating,
    HandoffStatus,
    Message,
    OperatorState,
    Presence,
    Role,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    Team,
    ToolCall,
    ToolCallStatus,
)
from agentops.operators.canned.placeholders import placeholder_values, placeholders_fill
from agentops.operators.models import CannedReply, Label, PrivateNote
from memory.models import Memory
from tracing.platform.types import RequestUser, SessionId


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


def _user_pk(user: RequestUser) -> int:
    """The signed-in user's id; 0, which matches nobody, for an anonymous visitor."""
    return user.pk or 0


def handoffs_open_for(*, user: RequestUser, label: str = "") -> QuerySet[Handoff]:
    """The queue a person sees: an operator their teams' handoffs and those of no team (all
    of them when in no team); an admin every one."""
    qs = handoffs_open(label=label)
    if has_role(user, "admin"):
        return qs
    team_ids = list(Team.objects.filter(members__pk=_user_pk(user)).values_list("pk", flat=True))
    return qs.filter(Q(team_id__in=team_ids) | Q(team__isnull=True)) if team_ids else qs


def operator_user_ids(*, team: Team) -> list[int]:
    """The team's members who may be given conversations: active operators and admins."""
    members = team.members.filter(is_active=True).filter(
        Q(groups__name__in=["operator", "admin"]) | Q(is_superuser=True)
    )
    return sorted(set(members.values_list("pk", flat=True)))


def operator_presence(*, user: RequestUser) -> str:
    state = OperatorState.objects.filter(user_id=_user_pk(user)).values_list("presence", flat=True)
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


# The queue's filters (agentops/operators/views.py reads them from the query string).
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
        team_ids = list(
            Team.objects.filter(members__pk=_user_pk(user)).values_list("pk", flat=True)
        )
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
        qs if has_role(user, "admin") else qs.filter(claimed_by_id=_user_pk(user)), label
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


def approvals_pending() -> QuerySet[ToolCall]:
    return (
        ToolCall.objects.filter(
            status=ToolCallStatus.AWAITING_APPROVAL, run__status__in=ACTIVE_RUN_STATUSES
        )
        .select_related("run__agent", "run__session")
        .order_by("started_at")
    )


def user_memories(*, session: Session, limit: int = 100) -> list[Memory]:
    """The end user's long-term memories with this agent (read-only for operators)."""
    if not session.external_user:
        return []
    return list(
        Memory.objects.filter(agent_id=session.agent_id, user_key=session.memory_scope)
        .defer("embedding")
        .order_by("-pinned", "-importance", "-created_at")[:limit]
    )


def user_conversations(*, session: Session, limit: int = 20) -> list[Session]:
    """The end user's other conversations (with any agent), newest first, each with its
    message count and how many times it was handed off."""
    if not session.external_user:
        return []
    return list(
        Session.objects.production()
        .filter(external_user=session.external_user)
        .exclude(pk=session.pk)
        .select_related("agent")
        .annotate(
            message_count=Count("messages", distinct=True),
            handoff_count=Count("handoffs", distinct=True),
            last_at=Max("messages__created_at"),
        )
        .order_by("-created_at")[:limit]
    )


@dataclass
class NoteItem:
    """A private note placed in the operator's view of the thread, by time."""

    note: PrivateNote

    @property
    def created_at(self) -> datetime:
        return self.note.created_at


def session_notes(*, session: Session, after: int = 0) -> list[PrivateNote]:
    """The session's private notes, oldest first; with `after`, those above that note id."""
    return list(
        PrivateNote.objects.filter(session=session, pk__gt=after)
        .select_related("author")
        .order_by("created_at", "id")
    )


def thread_with_notes(*, items: list[Any], notes: list[PrivateNote]) -> list[Any]:
    """The conversation's items with the notes among them where they were written (a note
    after the messages stored before it)."""
    thread: list[Any] = []
    pending = list(notes)
    for item in items:
        while pending and pending[0].created_at < item.message.created_at:
            thread.append(NoteItem(note=pending.pop(0)))
        thread.append(item)
    thread += [NoteItem(note=n) for n in pending]
    return thread


def labels_list() -> list[Label]:
    return list(Label.objects.annotate(conversations=Count("sessions")).order_by("name"))


def session_labels(*, session: Session) -> list[Label]:
    return list(session.labels.order_by("name"))


def canned_reply_may_edit(*, reply: CannedReply, user: RequestUser) -> bool:
    """Personal replies: their owner only. Team replies: admins and the team's members.
    Replies for everyone: admins."""
    if reply.owner_id:
        return bool(reply.owner_id == user.pk)
    if not has_role(user, "operator"):
        return False
    if has_role(user, "admin"):
        return True
    return (
        reply.team_id is not None
        and Team.objects.filter(pk=reply.team_id, members__pk=_user_pk(user)).exists()
    )


def canned_replies_usable(*, user: RequestUser, team: Team | None = None) -> QuerySet[CannedReply]:
    """The replies an operator may insert: their own, those for every operator, their
    teams' and the team of the handoff they are answering."""
    teams = Q(team__in=Team.objects.filter(members__pk=_user_pk(user)))
    if team is not None:
        teams |= Q(team=team)
    scope = Q(owner=user) | Q(owner__isnull=True, team__isnull=True) | teams
    return CannedReply.objects.filter(scope).select_related("team").order_by("shortcut", "id")


def canned_replies_for_handoff(*, handoff: Handoff, user: RequestUser) -> list[dict[str, str]]:
    """The usable replies with their placeholders filled for this conversation, as the reply
    box's `/` search gets them (plain text: the box inserts text, never markup)."""
    values = placeholder_values(session=handoff.session, operator=user, team=handoff.team)
    return [
        {
            "shortcut": r.shortcut,
            "title": r.title,
            "scope": "personal" if r.owner_id else (r.team.name if r.team else "everyone"),
            "text": placeholders_fill(text=r.content, values=values),
        }
        for r in canned_replies_usable(user=user, team=handoff.team)
    ]


def canned_replies_manageable(*, user: RequestUser) -> list[CannedReply]:
    """The replies listed on the management page: those the user may use, admins' view
    adds every team's (personal replies stay their owner's)."""
    qs = CannedReply.objects.select_related("team", "owner")
    if has_role(user, "admin"):
        qs = qs.filter(Q(owner=user) | Q(owner__isnull=True))
    else:
        qs = canned_replies_usable(user=user).select_related("team", "owner")
    return list(qs.order_by("shortcut", "id"))


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


def handoff_rating_get(*, session_id: SessionId) -> HandoffRating | None:
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
    *,
    action: str = "",
    actor: str = "",
    session_id: SessionId | None = None,
    since: datetime | None = None,
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


def _queue_of(user: RequestUser) -> tuple[str, list[int]]:
    """SQL condition (on `h`, the handoff) for an open handoff being in `user`'s queue: for
    admins and operators in no team, every open handoff; otherwise those of their teams and
    those sent to no team."""
    if has_role(user, "admin"):
        return "TRUE", []
    return (
        """(h.team_id IS NULL
            OR NOT EXISTS (SELECT 1 FROM agentops_team_members m WHERE m.user_id = %s)
            OR h.team_id IN (SELECT m.team_id FROM agentops_team_members m WHERE m.user_id = %s))""",
        [_user_pk(user), _user_pk(user)],
    )


def unread_counts(*, user: RequestUser) -> dict[str, int]:
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
            [*params, *[_user_pk(user)] * 4],
        )
        handoffs, messages = cursor.fetchone()
    return {"handoffs": handoffs, "messages": messages, "total": handoffs + messages}


def notification_sound(*, user: RequestUser) -> bool:
    from agentops.models import NotificationSettings

    return NotificationSettings.objects.filter(user=user.pk, sound=True).exists()


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
        Session.objects.production()
        .filter(status=SessionStatus.ACTIVE)
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


def labels_with_counts() -> QuerySet[Label]:
    """Every label with how many conversations carry it, and how many of those wait in the
    queue or are being worked (a handoff open or claimed)."""
    return Label.objects.select_related("created_by").annotate(
        conversations=Count("sessions", distinct=True),
        active=Count(
            "sessions",
            filter=Q(sessions__handoffs__status__in=(HandoffStatus.OPEN, HandoffStatus.CLAIMED)),
            distinct=True,
        ),
    )


def handoff_workable_by(*, handoff: Handoff, user: RequestUser) -> bool:
    """Whether `user` may open and work this handoff: admins any; operators open and resolved
    ones and those they hold, not another operator's (an admin reassigns it)."""
    if has_role(user, "admin") or handoff.status != HandoffStatus.CLAIMED:
        return True
    return bool(handoff.claimed_by_id == user.pk)


def session_held_by_another(*, session: Session, user: RequestUser) -> bool:
    """A handoff of the session is claimed by an operator other than `user` (not an admin)."""
    if has_role(user, "admin"):
        return False
    return (
        Handoff.objects.filter(session=session, status=HandoffStatus.CLAIMED)
        .exclude(claimed_by_id=user.pk)
        .exists()
    )
