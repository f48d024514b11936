"""Takeover: an operator takes a conversation the agent never handed off."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agentops.events import event_record
from agentops.models import (
    ACTIVE_RUN_STATUSES,
    Handoff,
    HandoffStatus,
    Run,
    RunStatus,
    Session,
    SessionStatus,
)
from agentops.operators.access import HandoffConflict, username_of
from agentops.operators.assignment.services import handoff_claim
from agentops.runtime.checkpoint import status_broadcast
from agentops.runtime.services import handoff_open, run_slot_free
from tracing.platform.types import RequestUser


@dataclass
class Takeover:
    """What a takeover did: `handoff` is the operator's now, or `run` stops at its next
    checkpoint and then hands the conversation to them."""

    handoff: Handoff | None = None
    run: Run | None = None


TAKEOVER_ATTEMPTS = 5


def session_take_over(*, session_id: uuid.UUID | str, user: RequestUser) -> Takeover:
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
def _take_over_once(*, session_id: uuid.UUID | str, user: RequestUser) -> Takeover | None:
    name = username_of(user)
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
        raise HandoffConflict(f"{username_of(current.claimed_by)} has this conversation already")
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
        raise HandoffConflict(f"{username_of(run.takeover_by)} is taking this conversation over")
