"""Writes of the takeover queue: claim, reply, hand back, close, reassign.

Every state change is a conditional UPDATE on the handoff row, so two operators (or two
browser tabs) racing on the same handoff cannot both win; the loser learns who did.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agentops.auth import has_role
from agentops.models import (
    ACTIVE_RUN_STATUSES,
    AssignmentMode,
    Handoff,
    HandoffResolution,
    HandoffStatus,
    Message,
    OperatorState,
    Presence,
    Role,
    Run,
    Session,
    SessionStatus,
    Team,
)
from agentops.operators.selectors import operator_loads, operator_user_ids
from agentops.runtime.checkpoint import messages_append
from agentops.runtime.context import message_tokens
from agentops.runtime.services import MAX_MESSAGE_CHARS, run_start
from agentops.services import audit_record
from agentops.webhooks.services import webhook_handoff_event
from tracing.live import OPS_GROUP, broadcast, session_group


class HandoffConflict(Exception):
    """The handoff is not in a state that allows this (someone else acted first)."""


def _username(user: Any) -> str:
    return user.get_username() if user is not None else "nobody"


def _ops_event(kind: str, handoff: Handoff, **extra: Any) -> None:
    broadcast(
        OPS_GROUP,
        {
            "kind": kind,
            "handoff_id": handoff.pk,
            "session_id": str(handoff.session_id),
            **extra,
        },
    )


def _may_act(*, handoff: Handoff, user: Any) -> None:
    if handoff.status != HandoffStatus.CLAIMED:
        raise HandoffConflict(f"this handoff is {handoff.status}, not claimed")
    if handoff.claimed_by_id != user.pk and not has_role(user, "admin"):
        raise HandoffConflict(f"this handoff is claimed by {_username(handoff.claimed_by)}")


@transaction.atomic
def handoff_claim(*, handoff_id: int, user: Any) -> Handoff:
    """Take an open handoff. Exactly one of several racing operators wins."""
    now = timezone.now()
    won = Handoff.objects.filter(pk=handoff_id, status=HandoffStatus.OPEN).update(
        status=HandoffStatus.CLAIMED, claimed_by=user, claimed_at=now
    )
    handoff = Handoff.objects.select_related("claimed_by", "session").get(pk=handoff_id)
    if not won:
        if handoff.status == HandoffStatus.CLAIMED:
            raise HandoffConflict(f"{_username(handoff.claimed_by)} claimed it first")
        raise HandoffConflict(f"this handoff is already {handoff.status}")
    Session.objects.filter(pk=handoff.session_id).update(operator=user, updated_at=now)
    audit_record(
        actor=user, action="handoff.claim", session=handoff.session, target=f"handoff {handoff.pk}"
    )
    _ops_event("handoff.claimed", handoff, operator=_username(user))
    broadcast(
        session_group(handoff.session_id),
        {"kind": "handoff.claimed", "handoff_id": handoff.pk, "operator": _username(user)},
    )
    webhook_handoff_event(type="handoff.claimed", handoff=handoff, operator=_username(user))
    return handoff


def handoff_assign(*, handoff_id: int) -> Any | None:
    """Give an open handoff of an automatic team to one of its online operators under their
    cap, by round-robin or to the least busy; None when nobody can take it (it waits).

    The team row is locked, then the candidates' state rows in user order, so assignments in
    a team and to one person run one at a time: a rotation or a cap is never overrun, and the
    lock order is the same everywhere (no deadlock). The handoff is taken by a conditional
    UPDATE like a manual claim, so of an assignment and a claim racing exactly one wins."""
    with transaction.atomic():
        team_id = (
            Handoff.objects.filter(pk=handoff_id, status=HandoffStatus.OPEN)
            .values_list("team_id", flat=True)
            .first()
        )
        if team_id is None:
            return None
        team = Team.objects.select_for_update().get(pk=team_id)
        if team.assignment_mode == AssignmentMode.MANUAL:
            return None
        states = list(
            OperatorState.objects.select_for_update()
            .filter(user_id__in=operator_user_ids(team=team), presence=Presence.ONLINE)
            .order_by("user_id")
        )
        loads = operator_loads(user_ids=[s.user_id for s in states])
        eligible = [
            s for s in states if loads[s.user_id] < (s.concurrent_cap or team.concurrent_cap)
        ]
        if not eligible:
            return None
        after = team.last_assigned_to_id or 0  # the rotation goes on after the last one given
        rotation = [s for s in eligible if s.user_id > after] + [
            s for s in eligible if s.user_id <= after
        ]
        chosen = rotation[0]
        if team.assignment_mode == AssignmentMode.LEAST_BUSY:
            chosen = min(rotation, key=lambda s: loads[s.user_id])  # ties: the rotation's order
        now = timezone.now()
        won = Handoff.objects.filter(
            pk=handoff_id, status=HandoffStatus.OPEN, team_id=team.pk
        ).update(
            status=HandoffStatus.CLAIMED,
            claimed_by_id=chosen.user_id,
            claimed_at=now,
            assigned_automatically=True,
        )
        if not won:
            return None
        Team.objects.filter(pk=team.pk).update(last_assigned_to_id=chosen.user_id)
        handoff = Handoff.objects.select_related("claimed_by", "session").get(pk=handoff_id)
        operator = handoff.claimed_by
        Session.objects.filter(pk=handoff.session_id).update(operator=operator, updated_at=now)
        audit_record(
            actor=None,
            action="handoff.assign",
            session=handoff.session,
            target=f"handoff {handoff.pk}",
            operator=_username(operator),
            team=team.slug,
            mode=team.assignment_mode,
            load=loads[chosen.user_id] + 1,
        )
        _ops_event("handoff.claimed", handoff, operator=_username(operator), assigned=True)
        broadcast(
            session_group(handoff.session_id),
            {"kind": "handoff.claimed", "handoff_id": handoff.pk, "operator": _username(operator)},
        )
        webhook_handoff_event(type="handoff.claimed", handoff=handoff, operator=_username(operator))
    return operator


def handoffs_assign_pending(*, team_ids: Iterable[int] | None = None) -> int:
    """Assign the open handoffs of automatic teams, most urgent first, until nobody in the
    team can take more. Run when a handoff arrives, an operator comes online or frees a
    slot, and by the scheduler's sweep. Returns how many were assigned."""
    teams = Team.objects.exclude(assignment_mode=AssignmentMode.MANUAL).order_by("pk")
    if team_ids is not None:
        teams = teams.filter(pk__in=list(team_ids))
    assigned = 0
    for team in teams:
        waiting = Handoff.objects.filter(team=team, status=HandoffStatus.OPEN).order_by(
            "priority", "created_at"
        )
        for handoff_id in list(waiting.values_list("pk", flat=True)):
            if handoff_assign(handoff_id=handoff_id) is not None:
                assigned += 1
            elif Handoff.objects.filter(pk=handoff_id, status=HandoffStatus.OPEN).exists():
                break  # nobody in this team can take one now
    return assigned


def _assign_after_commit(*, user_id: int | None) -> None:
    """Once this transaction commits, fill the slot `user_id` just freed (in their teams)."""
    if user_id is None:
        return
    team_ids = list(Team.objects.filter(members__pk=user_id).values_list("pk", flat=True))
    if team_ids:
        transaction.on_commit(partial(handoffs_assign_pending, team_ids=team_ids), robust=True)


def operator_presence_set(*, user: Any, presence: str) -> OperatorState:
    """An operator goes online (and is given waiting conversations at once), away or offline
    (no new ones; those they hold stay theirs)."""
    if presence not in Presence.values:
        raise ValueError(f"presence: choose one of {', '.join(Presence.values)}")
    if not has_role(user, "operator"):
        raise PermissionError("only operators have a presence")
    with transaction.atomic():
        state, _ = OperatorState.objects.select_for_update().get_or_create(user=user)
        if state.presence != presence:
            state.presence = presence
            state.presence_changed_at = timezone.now()
            state.save(update_fields=["presence", "presence_changed_at"])
            broadcast(
                OPS_GROUP,
                {"kind": "operator.presence", "operator": _username(user), "presence": presence},
            )
    if presence == Presence.ONLINE:
        handoffs_assign_pending(team_ids=user.teams.values_list("pk", flat=True))
    return state


def operator_cap_set(*, user: Any, cap: int | None, actor: Any) -> OperatorState:
    """An admin sets how many conversations a person is given at once (None: the team's)."""
    if cap is not None and cap < 1:
        raise ValueError("cap: give at least 1, or leave it empty for the team's cap")
    with transaction.atomic():
        state, _ = OperatorState.objects.select_for_update().get_or_create(user=user)
        if state.concurrent_cap != cap:
            audit_record(
                actor=actor,
                action="operator.cap_set",
                target=user.get_username(),
                cap=cap,
                previous=state.concurrent_cap,
            )
            state.concurrent_cap = cap
            state.save(update_fields=["concurrent_cap"])
        _assign_after_commit(user_id=user.pk)
    return state


@transaction.atomic
def handoff_escalate(*, handoff: Handoff, team: Team, now: datetime) -> bool:
    """Move a handoff left unclaimed to the team's escalation team, or flag it for the admins.
    Conditional on the handoff being where the sweep saw it, so it escalates once."""
    to = team.escalate_to if team.escalate_to_id not in (None, team.pk) else None
    changes: dict[str, Any] = {"team_since": now, "escalated_at": now}
    if to is None:
        changes["escalated_to_admins"] = True
    else:
        changes["team"] = to
    won = Handoff.objects.filter(
        pk=handoff.pk,
        status=HandoffStatus.OPEN,
        team_id=team.pk,
        team_since=handoff.team_since,
        escalated_to_admins=False,
    ).update(**changes)
    if not won:
        return False
    destination = to.slug if to else "admins"
    audit_record(
        actor=None,
        action="handoff.escalated",
        session=handoff.session,
        target=f"handoff {handoff.pk}",
        **{"from": team.slug, "to": destination},
        after_minutes=team.escalate_after_minutes,
    )
    _ops_event("handoff.escalated", handoff, team=team.slug, to=destination)
    if to is not None:
        transaction.on_commit(partial(handoff_assign, handoff_id=handoff.pk), robust=True)
    return True


def handoffs_escalate(*, now: datetime | None = None) -> int:
    """Escalate every open handoff that waited longer than its team allows."""
    now = now or timezone.now()
    escalated = 0
    for team in Team.objects.filter(escalate_after_minutes__isnull=False).select_related(
        "escalate_to"
    ):
        due = now - timedelta(minutes=team.escalate_after_minutes or 0)
        waiting = Handoff.objects.filter(
            team=team, status=HandoffStatus.OPEN, escalated_to_admins=False, team_since__lte=due
        ).select_related("session")
        for handoff in waiting:
            escalated += handoff_escalate(handoff=handoff, team=team, now=now)
    return escalated


def handoffs_sla_check(*, now: datetime | None = None) -> int:
    """Store each service-level breach once: the first response (the first operator reply,
    or the end if none) or the resolution came after the team's target, or has not come and
    the target passed. The breach is stamped with its deadline; a conditional UPDATE on the
    empty stamp makes it count once however often this runs. Returns how many were new."""
    now = now or timezone.now()
    candidates = (
        Handoff.objects.filter(team__isnull=False)
        .filter(
            Q(team__first_response_minutes__isnull=False, first_response_breached_at__isnull=True)
            | Q(team__resolution_minutes__isnull=False, resolution_breached_at__isnull=True)
        )
        .filter(~Q(status=HandoffStatus.RESOLVED) | Q(resolved_at__gte=now - timedelta(days=1)))
        .select_related("team", "session")
    )
    new = 0
    for handoff in candidates:
        team = handoff.team
        assert team is not None
        checks = (
            (
                "first_response",
                team.first_response_minutes,
                handoff.first_response_breached_at,
                handoff.first_response_at or handoff.resolved_at,
            ),
            (
                "resolution",
                team.resolution_minutes,
                handoff.resolution_breached_at,
                handoff.resolved_at,
            ),
        )
        for kind, minutes, stamped, done_at in checks:
            if minutes is None or stamped is not None:
                continue
            due = handoff.created_at + timedelta(minutes=minutes)
            if (done_at or now) <= due:
                continue
            field = f"{kind}_breached_at"
            with transaction.atomic():
                counted = Handoff.objects.filter(
                    pk=handoff.pk, **{f"{field}__isnull": True}
                ).update(**{field: due})
                if counted:
                    new += 1
                    _ops_event("handoff.sla_breached", handoff, sla=kind, team=team.slug)
    return new


def handoffs_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """The scheduler's periodic pass over the queue (agentops/cron.py): escalations, then
    assignments a trigger missed, then service-level breaches."""
    return {
        "escalated": handoffs_escalate(now=now),
        "assigned": handoffs_assign_pending(),
        "sla_breaches": handoffs_sla_check(now=now),
    }


@transaction.atomic
def handoff_reply(*, handoff: Handoff, user: Any, content: str) -> Message:
    """The operator answers the end user; the message reaches the console live."""
    content = content.strip()
    if not content:
        raise ValueError("the reply must not be empty")
    if len(content) > MAX_MESSAGE_CHARS:
        raise ValueError(f"the reply is longer than {MAX_MESSAGE_CHARS} characters")
    handoff = (
        Handoff.objects.select_for_update(of=("self",))
        .select_related("claimed_by")
        .get(pk=handoff.pk)
    )
    _may_act(handoff=handoff, user=user)
    message = Message(
        role=Role.OPERATOR,
        content=content,
        author=user,
        token_count=message_tokens(content=content),
    )
    (message,) = messages_append(session_id=handoff.session_id, messages=[message])
    Handoff.objects.filter(pk=handoff.pk, first_response_at__isnull=True).update(
        first_response_at=message.created_at
    )
    audit_record(
        actor=user,
        action="handoff.reply",
        session=handoff.session,
        target=f"handoff {handoff.pk}",
        seq=message.seq,
    )
    _ops_event("handoff.reply", handoff, operator=_username(user))
    return message


def _resolve(*, handoff: Handoff, user: Any, resolution: str) -> Handoff:
    handoff = (
        Handoff.objects.select_for_update(of=("self",))
        .select_related("claimed_by")
        .get(pk=handoff.pk)
    )
    _may_act(handoff=handoff, user=user)
    now = timezone.now()
    done = Handoff.objects.filter(pk=handoff.pk, status=HandoffStatus.CLAIMED).update(
        status=HandoffStatus.RESOLVED, resolution=resolution, resolved_at=now
    )
    if not done:  # pragma: no cover - the row lock above makes this unreachable
        raise HandoffConflict("this handoff was resolved meanwhile")
    _assign_after_commit(user_id=handoff.claimed_by_id)
    handoff.refresh_from_db()
    return handoff


def _resolved_announce(handoff: Handoff) -> None:
    """Tells the ops feed, the session's viewers and the webhooks that the handoff ended."""
    _ops_event("handoff.resolved", handoff, resolution=handoff.resolution)
    broadcast(
        session_group(handoff.session_id),
        {"kind": "handoff.resolved", "handoff_id": handoff.pk, "resolution": handoff.resolution},
    )
    webhook_handoff_event(
        type="handoff.closed", handoff=handoff, key="0", resolution=handoff.resolution
    )


@transaction.atomic
def handoff_hand_back(*, handoff: Handoff, user: Any) -> Run:
    """Give the conversation back to the agent: it resumes with the operator's messages."""
    handoff = _resolve(handoff=handoff, user=user, resolution=HandoffResolution.HANDED_BACK)
    session = Session.objects.select_for_update().get(pk=handoff.session_id)
    if Run.objects.filter(session=session, status__in=ACTIVE_RUN_STATUSES).exists():
        raise HandoffConflict("a run of this session is still in progress")
    Session.objects.filter(pk=session.pk).update(
        status=SessionStatus.ACTIVE, operator=None, updated_at=timezone.now()
    )
    session.refresh_from_db()
    run = run_start(session=session)
    audit_record(
        actor=user,
        action="handoff.hand_back",
        session=session,
        target=f"handoff {handoff.pk}",
        run=str(run.pk),
    )
    _resolved_announce(handoff)
    return run


@transaction.atomic
def handoff_close(*, handoff: Handoff, user: Any) -> Handoff:
    """The operator resolved it: the session is closed."""
    handoff = _resolve(handoff=handoff, user=user, resolution=HandoffResolution.CLOSED)
    Session.objects.filter(pk=handoff.session_id).update(
        status=SessionStatus.CLOSED, operator=None, updated_at=timezone.now()
    )
    audit_record(
        actor=user,
        action="handoff.close",
        session=handoff.session,
        target=f"handoff {handoff.pk}",
    )
    _resolved_announce(handoff)
    return handoff


@transaction.atomic
def handoff_reassign(*, handoff: Handoff, user: Any, to_username: str) -> Handoff:
    """An admin moves an open or claimed handoff to another operator."""
    if not has_role(user, "admin"):
        raise PermissionError("only admins can reassign")
    target = get_user_model().objects.filter(username=to_username, is_active=True).first()
    if target is None or not has_role(target, "operator"):
        raise ValueError(f"{to_username!r} is not an active operator")
    handoff = (
        Handoff.objects.select_for_update(of=("self",))
        .select_related("claimed_by")
        .get(pk=handoff.pk)
    )
    if handoff.status == HandoffStatus.RESOLVED:
        raise HandoffConflict("this handoff is already resolved")
    previous = _username(handoff.claimed_by) if handoff.claimed_by_id else ""
    _assign_after_commit(user_id=handoff.claimed_by_id)
    now = timezone.now()
    Handoff.objects.filter(pk=handoff.pk).update(
        status=HandoffStatus.CLAIMED,
        claimed_by=target,
        claimed_at=handoff.claimed_at or now,
    )
    Session.objects.filter(pk=handoff.session_id).update(operator=target, updated_at=now)
    handoff.refresh_from_db()
    audit_record(
        actor=user,
        action="handoff.reassign",
        session=handoff.session,
        target=f"handoff {handoff.pk}",
        to=target.get_username(),
        previous=previous,
    )
    _ops_event("handoff.claimed", handoff, operator=target.get_username())
    broadcast(
        session_group(handoff.session_id),
        {"kind": "handoff.claimed", "handoff_id": handoff.pk, "operator": target.get_username()},
    )
    webhook_handoff_event(type="handoff.claimed", handoff=handoff, operator=target.get_username())
    return handoff
