"""Assignment: a handoff claimed by an operator, given out automatically to a team's online
operators under their caps (round-robin or the least busy), reassigned by an admin.

Every state change is a conditional UPDATE on the handoff row, so two operators (or two
browser tabs) racing on the same handoff cannot both win; the loser learns who did.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from agentops.auth import has_role, role_require
from agentops.events import audit_record, event_record
from agentops.hooks import Event
from agentops.models import (
    MAX_CAP,
    AssignmentMode,
    Handoff,
    HandoffStatus,
    OperatorState,
    Presence,
    Session,
    Team,
)
from agentops.operators.access import HandoffConflict, username_of
from agentops.operators.assignment.selectors import operator_user_ids
from agentops.selectors import operator_loads
from tracing.platform.errors import Invalid


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
            raise HandoffConflict(f"{username_of(handoff.claimed_by)} claimed it first")
        raise HandoffConflict(f"this handoff is already {handoff.status}")
    Session.objects.filter(pk=handoff.session_id).update(operator=user, updated_at=now)
    event_record(
        kind="handoff.claimed",
        actor=user,
        handoff=handoff,
        data={"operator": username_of(user)},
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
            data={"operator": username_of(operator), "assigned": True},
            audit="handoff.assign",
            detail={
                "operator": username_of(operator),
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


def handoffs_assign_after_commit(*, user_id: int | None) -> None:
    """Once this transaction commits, fill the slot `user_id` just freed (in their teams)."""
    if user_id is None:
        return
    team_ids = list(Team.objects.filter(members__pk=user_id).values_list("pk", flat=True))
    if team_ids:
        transaction.on_commit(partial(handoffs_assign_pending, team_ids=team_ids), robust=True)


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
        handoffs_assign_after_commit(user_id=user.pk)
    return state


@transaction.atomic
def handoff_reassign(*, handoff: Handoff, user: Any, to_username: str) -> Handoff:
    """An admin moves an open or claimed handoff to another operator."""
    role_require(user=user, role="admin", refusal="only admins can reassign")
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
    previous = username_of(handoff.claimed_by) if handoff.claimed_by_id else ""
    handoffs_assign_after_commit(user_id=handoff.claimed_by_id)
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
