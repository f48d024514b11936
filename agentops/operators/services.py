"""Writes of the takeover queue: claim, reply, hand back, close, reassign.

Every state change is a conditional UPDATE on the handoff row, so two operators (or two
browser tabs) racing on the same handoff cannot both win; the loser learns who did.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agentops.auth import has_role
from agentops.models import (
    ACTIVE_RUN_STATUSES,
    Handoff,
    HandoffRating,
    HandoffResolution,
    HandoffStatus,
    Message,
    Role,
    Run,
    RunStatus,
    Session,
    SessionStatus,
)
from agentops.runtime.checkpoint import messages_append, status_broadcast
from agentops.runtime.context import message_tokens
from agentops.runtime.services import MAX_MESSAGE_CHARS, handoff_open, run_slot_free, run_start
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
    under us is looked at again."""
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
            audit_record(
                actor=user, action="run.take_over", session=run.session, target=str(run.pk)
            )
            broadcast(
                OPS_GROUP,
                {
                    "kind": "run.takeover",
                    "run_id": str(run.pk),
                    "session_id": str(session_id),
                    "operator": name,
                },
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
        raise ValueError("score: give a whole number from 1 to 5")
    comment = (comment or "").strip()
    if len(comment) > MAX_RATING_COMMENT:
        raise ValueError(f"comment: at most {MAX_RATING_COMMENT} characters")
    if "\x00" in comment:
        raise ValueError("comment: must not contain NUL characters")
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
    _ops_event("handoff.rated", handoff, score=score, replaced=not created)
    return rating
