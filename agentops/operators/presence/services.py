"""Presence: an operator online (given conversations), away or offline. It follows the person:
their choice, their login and logout, their operator pages open (/ws/inbox/), the sweep.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agentops.auth import has_role, role_require
from agentops.events import event_record
from agentops.models import OperatorState, Presence
from agentops.operators.access import username_of
from agentops.operators.assignment.services import handoffs_assign_pending
from tracing.platform.errors import Invalid


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
                kind="operator.presence", data={"operator": username_of(user), "presence": presence}
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
    role_require(user=user, role="operator", refusal="only operators have a presence")
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
                data={"operator": username_of(state.user), "presence": Presence.AWAY},
            )
    return away
