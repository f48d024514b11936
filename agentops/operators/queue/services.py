"""The queue over time: escalation of handoffs left waiting, service-level breaches, the
scheduler's sweeps; snooze and wake; the operator's notification sound.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agentops.events import event_record
from agentops.hooks import Event
from agentops.models import MAX_POLICY_MINUTES, Handoff, HandoffStatus, NotificationSettings, Team
from agentops.operators.access import HandoffConflict, handoff_work_check
from agentops.operators.assignment.services import handoff_assign, handoffs_assign_pending
from tracing.platform.errors import Invalid


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


MAX_SNOOZE_DAYS = 90


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
    handoff_work_check(handoff=handoff, user=user)
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
    handoff_work_check(handoff=handoff, user=user)
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


def notification_sound_set(*, user: Any, on: bool) -> NotificationSettings:
    settings, _ = NotificationSettings.objects.update_or_create(user=user, defaults={"sound": on})
    return settings
