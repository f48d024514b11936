"""Writes of the takeover queue: claim, reply, hand back, close, reassign; and of working a
conversation: private notes, transfer, snooze, labels, canned replies.

Every state change is a conditional UPDATE on the handoff row, so two operators (or two
browser tabs) racing on the same handoff cannot both win; the loser learns who did.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from agentops.auth import has_role
from agentops.events import audit_record, event_record
from agentops.hooks import Event
from agentops.models import (
    ACTIVE_RUN_STATUSES,
    MAX_CAP,
    MAX_POLICY_MINUTES,
    AssignmentMode,
    Handoff,
    HandoffRating,
    HandoffRead,
    HandoffResolution,
    HandoffStatus,
    Message,
    NotificationSettings,
    OperatorState,
    Presence,
    Role,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    Team,
)
from agentops.operators.canned.placeholders import placeholders_unknown
from agentops.operators.models import CannedReply, Label, LabelColour, PrivateNote
from agentops.operators.selectors import canned_reply_may_edit, operator_user_ids
from agentops.people.selectors import team_get
from agentops.runtime.checkpoint import messages_append, status_broadcast
from agentops.runtime.context import message_tokens
from agentops.runtime.services import MAX_MESSAGE_CHARS, handoff_open, run_slot_free, run_start
from agentops.selectors import operator_loads
from tracing.platform.errors import Conflict, Forbidden, Invalid, NotFound
from tracing.platform.live import broadcast, user_group


class HandoffConflict(Conflict):
    """The handoff is not in a state that allows this (someone else acted first)."""


def _username(user: Any) -> str:
    return user.get_username() if user is not None else "nobody"


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
        status=HandoffStatus.CLAIMED,
        claimed_by=user,
        claimed_at=now,
        snoozed_at=None,
        snoozed_until=None,
    )
    handoff = Handoff.objects.select_related("claimed_by", "session").get(pk=handoff_id)
    if not won:
        if handoff.status == HandoffStatus.CLAIMED:
            raise HandoffConflict(f"{_username(handoff.claimed_by)} claimed it first")
        raise HandoffConflict(f"this handoff is already {handoff.status}")
    Session.objects.filter(pk=handoff.session_id).update(operator=user, updated_at=now)
    event_record(
        kind="handoff.claimed",
        actor=user,
        handoff=handoff,
        data={"operator": _username(user)},
        audit="handoff.claim",
        viewers=True,
    )
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
            Handoff.objects.filter(pk=handoff_id, status=HandoffStatus.OPEN, snoozed_at=None)
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
            pk=handoff_id, status=HandoffStatus.OPEN, team_id=team.pk, snoozed_at=None
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
        event_record(
            kind="handoff.claimed",
            handoff=handoff,
            data={"operator": _username(operator), "assigned": True},
            audit="handoff.assign",
            detail={
                "operator": _username(operator),
                "team": team.slug,
                "mode": team.assignment_mode,
                "load": loads[chosen.user_id] + 1,
            },
            viewers=True,
        )
    return operator


def handoff_on_created(event: Event) -> None:
    """A hook subscriber (OperatorsConfig.ready): a handoff opened for a team that assigns
    automatically is given to one of its operators once it commits (if that fails, it waits
    in the queue for the scheduler's sweep)."""
    handoff = event.handoff
    if handoff is None or handoff.status != HandoffStatus.OPEN or handoff.team_id is None:
        return
    transaction.on_commit(partial(handoff_assign, handoff_id=handoff.pk), robust=True)


def handoffs_assign_pending(*, team_ids: Iterable[int] | None = None) -> int:
    """Assign the open handoffs of automatic teams, most urgent first, until nobody in the
    team can take more. Run when a handoff arrives, an operator comes online or frees a
    slot, and by the scheduler's sweep. Returns how many were assigned."""
    teams = Team.objects.exclude(assignment_mode=AssignmentMode.MANUAL).order_by("pk")
    if team_ids is not None:
        teams = teams.filter(pk__in=list(team_ids))
    assigned = 0
    for team in teams:
        # A snoozed handoff waits for its wake-up, not for an operator.
        waiting = Handoff.objects.filter(
            team=team, status=HandoffStatus.OPEN, snoozed_at=None
        ).order_by("priority", "created_at")
        for handoff_id in list(waiting.values_list("pk", flat=True)):
            if handoff_assign(handoff_id=handoff_id) is not None:
                assigned += 1
            elif waiting.filter(pk=handoff_id).exists():
                break  # nobody in this team can take one now
    return assigned


def teams_on_saved(event: Event) -> None:
    """A hook subscriber (OperatorsConfig.ready): a team was saved (it may assign
    automatically now, have a larger cap or new members): give out what waits, once it
    commits."""
    team_ids = [event.data["team_id"]]
    transaction.on_commit(partial(handoffs_assign_pending, team_ids=team_ids), robust=True)


def _assign_after_commit(*, user_id: int | None) -> None:
    """Once this transaction commits, fill the slot `user_id` just freed (in their teams)."""
    if user_id is None:
        return
    team_ids = list(Team.objects.filter(members__pk=user_id).values_list("pk", flat=True))
    if team_ids:
        transaction.on_commit(partial(handoffs_assign_pending, team_ids=team_ids), robust=True)


def _presence_change(
    *, user: Any, presence: str | None, chosen: str | None = None, seen: bool = True
) -> OperatorState:
    """The one writer of an operator's presence: `presence` (None: what they chose), their
    choice `chosen` when they made one, the time a page of theirs was seen open. A change is
    announced on the ops feed (the Teams page, the operator's own open pages); going online
    gives them waiting conversations at once."""
    now = timezone.now()
    with transaction.atomic():
        state, _ = OperatorState.objects.select_for_update().get_or_create(user=user)
        fields = ["seen_at"] if seen else []
        state.seen_at = now if seen else state.seen_at
        if chosen is not None and state.chosen != chosen:
            state.chosen = chosen
            fields.append("chosen")
        presence = state.chosen if presence is None else presence
        changed = state.presence != presence
        if changed:
            state.presence, state.presence_changed_at = presence, now
            fields += ["presence", "presence_changed_at"]
        if fields:
            state.save(update_fields=fields)
        if changed:
            event_record(
                kind="operator.presence", data={"operator": _username(user), "presence": presence}
            )
    if changed and presence == Presence.ONLINE:
        handoffs_assign_pending(team_ids=user.teams.values_list("pk", flat=True))
    return state


def operator_presence_set(*, user: Any, presence: str) -> OperatorState:
    """An operator chooses online (and is given waiting conversations at once), away or
    offline (no new ones; those they hold stay theirs). The choice is remembered: a login
    or an opened page brings it back."""
    if presence not in Presence.values:
        raise Invalid(f"choose one of {', '.join(Presence.values)}", field="presence")
    if not has_role(user, "operator"):
        raise Forbidden("only operators have a presence")
    return _presence_change(user=user, presence=presence, chosen=presence)


def operator_logged_in(*, user: Any) -> None:
    """An operator logs in: they are what they last chose (online unless they chose away
    or offline)."""
    if has_role(user, "operator"):
        _presence_change(user=user, presence=None)


def operator_logged_out(*, user: Any) -> None:
    """An operator logs out: offline (their choice stays for the next login)."""
    if OperatorState.objects.filter(user_id=user.pk).exclude(presence=Presence.OFFLINE).exists():
        _presence_change(user=user, presence=Presence.OFFLINE, seen=False)


def operator_page_seen(*, user: Any, opened: bool) -> None:
    """An operator page holds /ws/inbox/ open: it `opened` (the operator is back: what they
    chose, e.g. online again after the sweep made them away), is still open (a heartbeat)
    or has just closed (the away clock starts now)."""
    if opened:
        if has_role(user, "operator"):
            _presence_change(user=user, presence=None)
        return
    OperatorState.objects.filter(user_id=user.pk).update(seen_at=timezone.now())


def operators_away_sweep(*, now: datetime | None = None) -> int:
    """The scheduler's pass (agentops/cron.py): an online operator with no operator page
    seen open for OPERATOR_AWAY_AFTER_SECONDS is made away (no new conversations; a page
    opening brings them back). Conditional on the state the sweep read, so a page that
    beats meanwhile wins. Returns how many were made away."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.OPERATOR_AWAY_AFTER_SECONDS)
    stale = Q(seen_at__lt=cutoff) | Q(seen_at=None)
    away = 0
    for state in OperatorState.objects.filter(stale, presence=Presence.ONLINE).select_related(
        "user"
    ):
        if OperatorState.objects.filter(stale, pk=state.pk, presence=Presence.ONLINE).update(
            presence=Presence.AWAY, presence_changed_at=now
        ):
            away += 1
            event_record(
                kind="operator.presence",
                data={"operator": _username(state.user), "presence": Presence.AWAY},
            )
    return away


def operator_cap_set(*, user: Any, cap: int | None, actor: Any) -> OperatorState:
    """An admin sets how many conversations a person is given at once (None: the team's)."""
    if cap is not None and not 1 <= cap <= MAX_CAP:
        raise Invalid(f"give 1 to {MAX_CAP}, or leave it empty for the team's cap", field="cap")
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
    event_record(
        kind="handoff.escalated",
        handoff=handoff,
        data={"team": team.slug, "to": destination},
        audit="handoff.escalated",
        detail={"from": team.slug, "to": destination, "after_minutes": team.escalate_after_minutes},
    )
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
        due = now - timedelta(minutes=min(team.escalate_after_minutes or 0, MAX_POLICY_MINUTES))
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
            due = handoff.created_at + timedelta(minutes=min(minutes, MAX_POLICY_MINUTES))
            if (done_at or now) <= due:
                continue
            field = f"{kind}_breached_at"
            with transaction.atomic():
                counted = Handoff.objects.filter(
                    pk=handoff.pk, **{f"{field}__isnull": True}
                ).update(**{field: due})
                if counted:
                    new += 1
                    event_record(
                        kind="handoff.sla_breached",
                        handoff=handoff,
                        data={"sla": kind, "team": team.slug},
                    )
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
        raise Invalid("the reply must not be empty", field="content")
    if len(content) > MAX_MESSAGE_CHARS:
        raise Invalid(f"the reply is longer than {MAX_MESSAGE_CHARS} characters", field="content")
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
    event_record(
        kind="handoff.reply",
        actor=user,
        handoff=handoff,
        data={"operator": _username(user)},
        audit="handoff.reply",
        detail={"seq": message.seq},
    )
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
        status=HandoffStatus.RESOLVED,
        resolution=resolution,
        resolved_at=now,
        snoozed_at=None,
        snoozed_until=None,
    )
    if not done:  # pragma: no cover - the row lock above makes this unreachable
        raise HandoffConflict("this handoff was resolved meanwhile")
    _assign_after_commit(user_id=handoff.claimed_by_id)
    handoff.refresh_from_db()
    return handoff


def _resolved_record(
    *, handoff: Handoff, user: Any, audit: str, detail: dict[str, Any] | None = None
) -> None:
    """The handoff ended: audited, and told to the ops feed, the session's viewers and the
    hooks (the webhooks' handoff.closed)."""
    event_record(
        kind="handoff.resolved",
        actor=user,
        handoff=handoff,
        data={"resolution": handoff.resolution},
        audit=audit,
        detail=detail,
        viewers=True,
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
    _resolved_record(
        handoff=handoff, user=user, audit="handoff.hand_back", detail={"run": str(run.pk)}
    )
    return run


@transaction.atomic
def handoff_close(*, handoff: Handoff, user: Any) -> Handoff:
    """The operator resolved it: the session is closed."""
    handoff = _resolve(handoff=handoff, user=user, resolution=HandoffResolution.CLOSED)
    Session.objects.filter(pk=handoff.session_id).update(
        status=SessionStatus.CLOSED, operator=None, updated_at=timezone.now()
    )
    _resolved_record(handoff=handoff, user=user, audit="handoff.close")
    return handoff


@transaction.atomic
def handoff_reassign(*, handoff: Handoff, user: Any, to_username: str) -> Handoff:
    """An admin moves an open or claimed handoff to another operator."""
    if not has_role(user, "admin"):
        raise Forbidden("only admins can reassign")
    target = get_user_model().objects.filter(username=to_username, is_active=True).first()
    if target is None or not has_role(target, "operator"):
        raise Invalid(f"{to_username!r} is not an active operator", field="operator")
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
    event_record(
        kind="handoff.claimed",
        actor=user,
        handoff=handoff,
        data={"operator": target.get_username()},
        audit="handoff.reassign",
        detail={"to": target.get_username(), "previous": previous},
        viewers=True,
    )
    return handoff


# -- working the conversation ----------------------------------------------------------------
MAX_NOTE_CHARS = 8000
MAX_SNOOZE_DAYS = 90


def _may_work(*, handoff: Handoff, user: Any) -> None:
    """Transfer and snooze: an open handoff is anyone's on the shift; a claimed one its
    holder's (or an admin's); a resolved one nobody's."""
    if not has_role(user, "operator"):
        raise Forbidden("this needs the operator role")
    if handoff.status == HandoffStatus.RESOLVED:
        raise HandoffConflict("this handoff is already resolved")
    if handoff.status == HandoffStatus.CLAIMED:
        _may_act(handoff=handoff, user=user)


def _note_content(content: str, *, required: bool) -> str:
    content = content.strip()
    if required and not content:
        raise Invalid("the note must not be empty", field="content")
    if len(content) > MAX_NOTE_CHARS:
        raise Invalid(f"the note is longer than {MAX_NOTE_CHARS} characters", field="content")
    if "\x00" in content:
        raise Invalid("the note must not contain NUL characters", field="content")
    return content


@transaction.atomic
def handoff_note_add(*, handoff: Handoff, user: Any, content: str) -> PrivateNote:
    """A private note in the conversation's thread: for operators only (see PrivateNote).
    Any operator may leave one, on any handoff they can open."""
    if not has_role(user, "operator"):
        raise Forbidden("this needs the operator role")
    content = _note_content(content, required=True)
    note = PrivateNote.objects.create(
        session_id=handoff.session_id, handoff=handoff, author=user, content=content
    )
    # Operators' feed only, and no text: the session's stream also reaches end users.
    event_record(
        kind="handoff.note",
        actor=user,
        handoff=handoff,
        data={"note_id": note.pk},
        audit="handoff.note",
        detail={"note": note.pk},
    )
    return note


@transaction.atomic
def handoff_transfer(
    *,
    handoff: Handoff,
    user: Any,
    to_operator: str = "",
    to_team: str = "",
    note: str = "",
) -> Handoff:
    """Pass the conversation to another operator (it is theirs at once, in their queue) or to
    a team (back to the open queue, in that team). The note is a private note; the move is
    audit-logged. A snooze ends: the receiver sees it now."""
    if bool(to_operator) == bool(to_team):
        raise Invalid("choose either an operator or a team", field="to")
    note = _note_content(note, required=False)
    target: Any = None
    team: Team | None = None
    if to_operator:
        target = get_user_model().objects.filter(username=to_operator, is_active=True).first()
        if target is None or not has_role(target, "operator"):
            raise NotFound(f"{to_operator!r} is not an active operator", field="to")
    else:
        team = team_get(slug=to_team)
        if team is None:
            raise NotFound(f"there is no team {to_team!r}", field="to")
    handoff = (
        Handoff.objects.select_for_update(of=("self",))
        .select_related("claimed_by", "team", "session")
        .get(pk=handoff.pk)
    )
    _may_work(handoff=handoff, user=user)
    if target is not None and handoff.claimed_by_id == target.pk:
        raise HandoffConflict(f"{to_operator} already has this conversation")
    previous_holder = handoff.claimed_by_id
    previous = {
        "operator": _username(handoff.claimed_by) if handoff.claimed_by_id else "",
        "team": handoff.team.slug if handoff.team else "",
    }
    now = timezone.now()
    if target is not None:
        Handoff.objects.filter(pk=handoff.pk).update(
            status=HandoffStatus.CLAIMED,
            claimed_by=target,
            claimed_at=handoff.claimed_at or now,
            snoozed_at=None,
            snoozed_until=None,
        )
        Session.objects.filter(pk=handoff.session_id).update(operator=target, updated_at=now)
        destination = f"operator {target.get_username()}"
    else:
        assert team is not None
        # In a team's queue anew: its escalation clock starts again there.
        Handoff.objects.filter(pk=handoff.pk).update(
            status=HandoffStatus.OPEN,
            claimed_by=None,
            team=team,
            team_since=now,
            escalated_to_admins=False,
            snoozed_at=None,
            snoozed_until=None,
        )
        Session.objects.filter(pk=handoff.session_id).update(operator=None, updated_at=now)
        destination = f"team {team.slug}"
    handoff.refresh_from_db()
    private = PrivateNote.objects.create(
        session_id=handoff.session_id,
        handoff=handoff,
        author=user,
        content=note,
        transfer_to=destination,
    )
    event_record(
        kind="handoff.transferred",
        actor=user,
        handoff=handoff,
        data={"to": destination},
        audit="handoff.transfer",
        detail={
            "to": destination,
            "previous_operator": previous["operator"],
            "previous_team": previous["team"],
            "note": private.pk,
        },
    )
    # The slot it freed is filled, and a team that assigns automatically is given it.
    if previous_holder is not None and previous_holder != handoff.claimed_by_id:
        _assign_after_commit(user_id=previous_holder)
    if team is not None:
        transaction.on_commit(partial(handoffs_assign_pending, team_ids=[team.pk]), robust=True)
    if target is not None:
        # The session's viewers and the integrators hear who has the conversation now; never
        # the note (operator-only). The transfer above was the audit row and the ops event.
        event_record(
            kind="handoff.claimed",
            actor=user,
            handoff=handoff,
            data={"operator": target.get_username()},
            ops=False,
            viewers=True,
        )
    return handoff


@transaction.atomic
def handoff_snooze(*, handoff: Handoff, user: Any, until: datetime | None) -> Handoff:
    """Hide the handoff from the active queue until `until` or, if None, until the user
    writes again. A user message wakes it either way; so does the scheduler's sweep
    (`handoffs_wake_due`) once `until` has passed."""
    now = timezone.now()
    if until is not None:
        if until <= now:
            raise Invalid("choose a time in the future", field="until")
        if (until - now).days >= MAX_SNOOZE_DAYS:
            raise Invalid(f"snooze for less than {MAX_SNOOZE_DAYS} days", field="until")
    handoff = (
        Handoff.objects.select_for_update(of=("self",))
        .select_related("claimed_by")
        .get(pk=handoff.pk)
    )
    _may_work(handoff=handoff, user=user)
    Handoff.objects.filter(pk=handoff.pk).update(snoozed_at=now, snoozed_until=until)
    handoff.refresh_from_db()
    event_record(
        kind="handoff.snoozed",
        actor=user,
        handoff=handoff,
        audit="handoff.snooze",
        detail={"until": until.isoformat() if until else "the user writes"},
    )
    return handoff


def _wake(*, handoff_ids: list[int], actor: Any, why: str, skip_locked: bool = False) -> int:
    """Clear the snooze of these handoffs (those still snoozed); audit and tell the queue.
    The sweep skips rows an operator is changing (the next sweep sees them)."""
    woken = list(
        Handoff.objects.select_for_update(of=("self",), skip_locked=skip_locked)
        .filter(pk__in=handoff_ids, snoozed_at__isnull=False)
        .exclude(status=HandoffStatus.RESOLVED)
        .select_related("session")
    )
    if not woken:
        return 0
    Handoff.objects.filter(pk__in=[h.pk for h in woken]).update(snoozed_at=None, snoozed_until=None)
    team_ids = {h.team_id for h in woken if h.team_id and h.status == HandoffStatus.OPEN}
    if team_ids:  # back in the queue: an automatic team assigns it now, not at the next sweep
        transaction.on_commit(partial(handoffs_assign_pending, team_ids=team_ids), robust=True)
    for handoff in woken:
        event_record(
            kind="handoff.woken",
            actor=actor,
            handoff=handoff,
            data={"why": why},
            audit="handoff.wake",
            detail={"why": why},
        )
    return len(woken)


@transaction.atomic
def handoff_wake(*, handoff: Handoff, user: Any) -> Handoff:
    """An operator brings a snoozed handoff back to the queue now."""
    handoff = Handoff.objects.select_related("claimed_by").get(pk=handoff.pk)
    _may_work(handoff=handoff, user=user)
    if handoff.snoozed_at is None:
        raise HandoffConflict("this handoff is not snoozed")
    _wake(handoff_ids=[handoff.pk], actor=user, why="woken by an operator")
    handoff.refresh_from_db()
    return handoff


@transaction.atomic
def handoffs_wake_for_message(*, session_id: Any) -> int:
    """The user wrote: their snoozed handoffs return to the queue (the runtime calls this)."""
    ids = list(
        Handoff.objects.filter(session_id=session_id, snoozed_at__isnull=False).values_list(
            "pk", flat=True
        )
    )
    return _wake(handoff_ids=ids, actor=None, why="the user wrote") if ids else 0


def handoffs_on_user_message(event: Event) -> None:
    """A hook subscriber (OperatorsConfig.ready): the end user wrote to a conversation a
    human has, so its snoozed handoffs return to the queue, in the same transaction."""
    if event.session_id is not None:
        handoffs_wake_for_message(session_id=event.session_id)


@transaction.atomic
def handoffs_wake_due(*, now: datetime | None = None) -> int:
    """The scheduler's sweep: snoozed handoffs whose time has come return to the queue."""
    now = now or timezone.now()
    ids = list(
        Handoff.objects.filter(snoozed_at__isnull=False, snoozed_until__lte=now)
        .exclude(status=HandoffStatus.RESOLVED)
        .order_by("snoozed_until")
        .values_list("pk", flat=True)[:500]
    )
    if not ids:
        return 0
    return _wake(handoff_ids=ids, actor=None, why="the snooze ended", skip_locked=True)


# -- labels ------------------------------------------------------------------------------------
MAX_LABEL_CHARS = 50


def label_name_clean(*, name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise Invalid("give the label a name", field="name")
    if len(name) > MAX_LABEL_CHARS:
        raise Invalid(f"at most {MAX_LABEL_CHARS} characters", field="name")
    if "\x00" in name:
        raise Invalid("must not contain NUL characters", field="name")
    return name


@transaction.atomic
def session_label_add(*, session: Session, name: str, actor: Any, colour: str = "") -> Label:
    """Put a label on a conversation, creating the label if it is new (names are compared
    without regard to case; `colour`, from the palette, is used only for a new label)."""
    if not has_role(actor, "operator"):
        raise Forbidden("this needs the operator role")
    name = label_name_clean(name=name)
    if colour and colour not in LabelColour.values:
        raise Invalid(f"choose one of {', '.join(LabelColour.values)} or none", field="colour")
    label = Label.objects.filter(name__iexact=name).first()
    if label is None:
        try:
            with transaction.atomic():
                label = Label.objects.create(name=name, colour=colour, created_by=actor)
        except IntegrityError:  # created meanwhile by another operator
            label = Label.objects.get(name__iexact=name)
    if not label.sessions.filter(pk=session.pk).exists():
        label.sessions.add(session)
        event_record(
            kind="session.labels",
            actor=actor,
            session=session,
            audit="session.label",
            target=label.name,
        )
    return label


@transaction.atomic
def session_label_remove(*, session: Session, label: Label, actor: Any) -> None:
    if not has_role(actor, "operator"):
        raise Forbidden("this needs the operator role")
    if label.sessions.filter(pk=session.pk).exists():
        label.sessions.remove(session)
        event_record(
            kind="session.labels",
            actor=actor,
            session=session,
            audit="session.unlabel",
            target=label.name,
        )


@transaction.atomic
def label_update(*, label: Label, actor: Any, name: str, colour: str) -> Label:
    """Rename or recolour a label (admins): every conversation carrying it shows the change."""
    if not has_role(actor, "admin"):
        raise Forbidden("only admins change labels")
    name = label_name_clean(name=name)
    if colour not in ("", *LabelColour.values):
        raise Invalid(f"choose one of {', '.join(LabelColour.values)} or none", field="colour")
    if Label.objects.filter(name__iexact=name).exclude(pk=label.pk).exists():
        raise Invalid(f"a label named {name!r} exists already", field="name")
    before = label.name
    try:
        with transaction.atomic():  # taken meanwhile: the same error as above
            Label.objects.filter(pk=label.pk).update(name=name, colour=colour)
    except IntegrityError:
        raise Invalid(f"a label named {name!r} exists already", field="name") from None
    label.name, label.colour = name, colour
    event_record(
        kind="labels.changed",
        actor=actor,
        audit="label.update",
        target=before,
        detail={"name": name, "colour": colour},
    )
    return label


@transaction.atomic
def label_delete(*, label: Label, actor: Any) -> int:
    """Delete a label (admins): it leaves every conversation; returns how many carried it."""
    if not has_role(actor, "admin"):
        raise Forbidden("only admins delete labels")
    carried = label.sessions.count()
    label.delete()
    event_record(
        kind="labels.changed",
        actor=actor,
        audit="label.delete",
        target=label.name,
        detail={"conversations": carried},
    )
    return carried


# -- canned replies ----------------------------------------------------------------------------
def canned_reply_save(
    *,
    reply: CannedReply | None,
    shortcut: str,
    title: str,
    content: str,
    scope: str,
    actor: Any,
) -> CannedReply:
    """Create (`reply` None) or change a canned reply. `scope`: "personal", "team:<slug>" or
    "everyone". Unknown placeholders and scopes the actor may not write to are refused
    (ValueError naming the field)."""
    if not has_role(actor, "operator"):
        raise Forbidden("this needs the operator role")
    unknown = placeholders_unknown(text=content)
    if unknown:
        names = ", ".join("{{ " + n + " }}" for n in unknown)
        raise Invalid(f"unknown placeholder {names}", field="content")
    created = reply is None
    reply = reply or CannedReply(created_by=actor)
    if not created and not canned_reply_may_edit(reply=reply, user=actor):
        raise Forbidden("you may not change this canned reply")
    team: Team | None = None
    owner: Any = None
    if scope == "personal":
        owner = actor
    elif scope.startswith("team:"):
        team = team_get(slug=scope.removeprefix("team:"))
        if team is None:
            raise Invalid(f"there is no team {scope.removeprefix('team:')!r}", field="scope")
        if not has_role(actor, "admin") and not actor.teams.filter(pk=team.pk).exists():
            raise Invalid(f"you are not a member of team {team.slug}", field="scope")
    elif scope == "everyone":
        if not has_role(actor, "admin"):
            raise Invalid("only admins write replies for every operator", field="scope")
    else:
        raise Invalid("choose personal, a team or everyone", field="scope")
    reply.shortcut, reply.title, reply.content = shortcut, title, content
    reply.team, reply.owner = team, owner
    taken = CannedReply.objects.filter(shortcut=shortcut, team=team, owner=owner)
    if not created:
        taken = taken.exclude(pk=reply.pk)
    if taken.exists():
        raise Invalid(f"/{shortcut} is taken in this scope", field="shortcut")
    reply.full_clean(validate_unique=False, validate_constraints=False)
    with transaction.atomic():
        try:
            with transaction.atomic():  # taken meanwhile by another admin: the same error
                reply.save()
        except IntegrityError:
            raise Invalid(f"/{shortcut} is taken in this scope", field="shortcut") from None
        audit_record(
            actor=actor,
            action="canned_reply.created" if created else "canned_reply.changed",
            target=f"/{shortcut}",
            scope=reply.scope,
        )
    return reply


@transaction.atomic
def canned_reply_delete(*, reply: CannedReply, actor: Any) -> None:
    if not canned_reply_may_edit(reply=reply, user=actor):
        raise Forbidden("you may not delete this canned reply")
    audit_record(
        actor=actor, action="canned_reply.deleted", target=f"/{reply.shortcut}", scope=reply.scope
    )
    reply.delete()


# Sent to the operator's own group when their read markers move: their inbox streams recount.
UNREAD_CHANGED = "unread.changed"


def handoff_mark_read(*, handoff: Handoff, user: Any) -> HandoffRead:
    """The operator opened the handoff and has seen its conversation as it is now."""
    last_seq = Session.objects.filter(pk=handoff.session_id).values_list("last_seq", flat=True)[0]
    read, _ = HandoffRead.objects.update_or_create(
        user=user, handoff=handoff, defaults={"last_seq": last_seq}
    )
    broadcast(user_group(user.pk), {"kind": UNREAD_CHANGED})
    return read


def notification_sound_set(*, user: Any, on: bool) -> NotificationSettings:
    settings, _ = NotificationSettings.objects.update_or_create(user=user, defaults={"sound": on})
    return settings


@transaction.atomic
def handoffs_bulk_close(*, handoff_ids: list[int], user: Any) -> tuple[list[int], list[str]]:
    """Close many handoffs at once (duplicates, spam, an outage's flood): open ones, and
    claimed ones of the operator's own (any, for admins). Returns the ids closed and why the
    others were not; each closed one is audited and announced as a single close would be."""
    if not has_role(user, "operator"):
        raise Forbidden("closing needs the operator role")
    admin = has_role(user, "admin")
    rows = list(
        Handoff.objects.select_for_update(of=("self",))
        .filter(pk__in=handoff_ids)
        .select_related("claimed_by", "session")
        .order_by("pk")
    )
    found = {h.pk for h in rows}
    skipped = [f"handoff {pk}: no such handoff" for pk in handoff_ids if pk not in found]
    closing = []
    for handoff in rows:
        if handoff.status == HandoffStatus.RESOLVED:
            skipped.append(f"handoff {handoff.pk}: already resolved")
        elif handoff.status == HandoffStatus.CLAIMED and not (
            admin or handoff.claimed_by_id == user.pk
        ):
            skipped.append(f"handoff {handoff.pk}: claimed by {_username(handoff.claimed_by)}")
        else:
            closing.append(handoff)
    if not closing:
        return [], skipped
    now = timezone.now()
    ids = [h.pk for h in closing]
    Handoff.objects.filter(pk__in=ids).update(
        status=HandoffStatus.RESOLVED,
        resolution=HandoffResolution.CLOSED,
        resolved_at=now,
        snoozed_at=None,
        snoozed_until=None,
    )
    Session.objects.filter(pk__in=[h.session_id for h in closing]).update(
        status=SessionStatus.CLOSED, operator=None, updated_at=now
    )
    for handoff in closing:
        was = handoff.status
        handoff.status = HandoffStatus.RESOLVED
        handoff.resolution = HandoffResolution.CLOSED
        handoff.resolved_at = now
        _resolved_record(
            handoff=handoff, user=user, audit="handoff.close", detail={"bulk": True, "was": was}
        )
    return ids, skipped


@dataclass
class Takeover:
    """What a takeover did: `handoff` is the operator's now, or `run` stops at its next
    checkpoint and then hands the conversation to them."""

    handoff: Handoff | None = None
    run: Run | None = None


TAKEOVER_ATTEMPTS = 5


def session_take_over(*, session_id: uuid.UUID | str, user: Any) -> Takeover:
    """An operator takes over a conversation the agent never handed off.

    No run in flight (or one only queued or waiting, which no worker holds): the session is
    handed off to the operator at once. A run in progress is flagged: it stops at its next
    checkpoint (loop.py, RunDriver.stop_for_takeover) and hands off to them. Every step is a
    conditional UPDATE, so an agent handing off meanwhile (the operator claims that handoff)
    or another operator taking over (409 naming them) resolve cleanly; a state that moved
    under us is looked at again. A sandbox conversation (a draft chat, an experiment's, a
    fork: models.SessionQuerySet) is refused: it is nobody's to take."""
    if Session.objects.sandbox().filter(pk=session_id).exists():
        raise HandoffConflict(
            "this is a sandbox conversation (a draft chat, an experiment or a fork), not a "
            "real one: it is never taken over"
        )
    for _ in range(TAKEOVER_ATTEMPTS):
        outcome = _take_over_once(session_id=session_id, user=user)
        if outcome is not None:
            return outcome
    raise HandoffConflict("the conversation kept changing under the takeover; try again")


@transaction.atomic
def _take_over_once(*, session_id: uuid.UUID | str, user: Any) -> Takeover | None:
    name = _username(user)
    now = timezone.now()
    mine_or_nobody = Q(takeover_by__isnull=True) | Q(takeover_by=user)
    run = (
        Run.objects.filter(session_id=session_id, status__in=ACTIVE_RUN_STATUSES)
        .select_related("agent", "takeover_by")
        .order_by("-created_at")
        .first()
    )
    if run is not None and run.status == RunStatus.RUNNING:
        flagged = (
            Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING)
            .filter(mine_or_nobody)
            .update(takeover_by=user, takeover_at=now)
        )
        if flagged:
            event_record(
                kind="run.takeover",
                actor=user,
                run=run,
                data={"operator": name},
                audit="run.take_over",
            )
            return Takeover(run=run)
        _takeover_refused_if_held(run)
        return None  # the run moved on: look again
    if run is not None:  # queued or waiting: no worker holds it, it ends here
        ended = (
            Run.objects.filter(pk=run.pk, status__in=(RunStatus.QUEUED, RunStatus.WAITING))
            .filter(mine_or_nobody)
            .update(
                status=RunStatus.HANDED_OFF,
                finished_at=now,
                wake_at=None,
                wait_reason=f"taken over by {name}"[:200],
                takeover_by=user,
                takeover_at=now,
            )
        )
        if not ended:
            _takeover_refused_if_held(run)
            return None  # the run moved on: look again
        Session.objects.select_for_update().get(pk=session_id)
        handoff = handoff_open(
            session_id=session_id,
            agent_slug=run.agent.slug,
            run_id=run.pk,
            reason=f"taken over by {name}",
            team=run.agent.handoff_team,
            operator=user,
        )
        run.refresh_from_db()
        status_broadcast(run)
        transaction.on_commit(lambda: run_slot_free(run_id=run.pk))
        return Takeover(handoff=handoff)
    session = Session.objects.select_for_update().select_related("agent").get(pk=session_id)
    if Run.objects.filter(session_id=session_id, status__in=ACTIVE_RUN_STATUSES).exists():
        return None  # a message started a run meanwhile
    if session.status == SessionStatus.CLOSED:
        raise HandoffConflict("the conversation is closed")
    if session.status == SessionStatus.HANDED_OFF:
        current = (
            Handoff.objects.filter(session_id=session_id)
            .exclude(status=HandoffStatus.RESOLVED)
            .select_related("claimed_by")
            .order_by("-created_at")
            .first()
        )
        if current is None:
            raise HandoffConflict("the conversation is handed off but has no open handoff")
        if current.status == HandoffStatus.OPEN:  # the agent handed off first: claim that
            return Takeover(handoff=handoff_claim(handoff_id=current.pk, user=user))
        if current.claimed_by_id == user.pk:
            return Takeover(handoff=current)
        raise HandoffConflict(f"{_username(current.claimed_by)} has this conversation already")
    handoff = handoff_open(
        session_id=session_id,
        agent_slug=session.agent.slug,
        run_id=None,
        reason=f"taken over by {name}",
        team=session.agent.handoff_team,
        operator=user,
    )
    return Takeover(handoff=handoff)


def _takeover_refused_if_held(run: Run) -> None:
    """The conditional UPDATE matched nothing: refused if another operator's takeover holds
    the run; otherwise the run moved on and the caller looks again."""
    run.refresh_from_db(fields=["status", "takeover_by"])
    if run.status in ACTIVE_RUN_STATUSES and run.takeover_by_id is not None:
        raise HandoffConflict(f"{_username(run.takeover_by)} is taking this conversation over")


MAX_RATING_COMMENT = 2000


@transaction.atomic
def handoff_rate(
    *, session_id: uuid.UUID | str, score: Any, comment: str = "", rated_by: Any = None
) -> HandoffRating:
    """The end user rates the conversation an operator closed (CSAT): 1 to 5 and a comment.
    One rating per closed handoff; rating again replaces it (the end user changed their mind).
    Bad input is a ValueError naming the field; a conversation not closed by an operator, a
    HandoffConflict."""
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise Invalid("give a whole number from 1 to 5", field="score")
    comment = (comment or "").strip()
    if len(comment) > MAX_RATING_COMMENT:
        raise Invalid(f"at most {MAX_RATING_COMMENT} characters", field="comment")
    if "\x00" in comment:
        raise Invalid("must not contain NUL characters", field="comment")
    handoff = (
        Handoff.objects.select_for_update(of=("self",))
        .select_related("session")
        .filter(
            session_id=session_id,
            status=HandoffStatus.RESOLVED,
            resolution=HandoffResolution.CLOSED,
        )
        .order_by("-resolved_at")
        .first()
    )
    if handoff is None:
        raise HandoffConflict("only a conversation an operator closed can be rated")
    rating, created = HandoffRating.objects.update_or_create(
        handoff=handoff,
        defaults={
            "score": score,
            "comment": comment,
            "end_user": handoff.session.external_user,
            "rated_by": rated_by if rated_by is not None and rated_by.is_authenticated else None,
        },
    )
    event_record(
        kind="handoff.rated", handoff=handoff, data={"score": score, "replaced": not created}
    )
    return rating
