"""Writes of the takeover queue: claim, reply, hand back, close, reassign.

Every state change is a conditional UPDATE on the handoff row, so two operators (or two
browser tabs) racing on the same handoff cannot both win; the loser learns who did.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from agentops.auth import has_role
from agentops.models import (
    ACTIVE_RUN_STATUSES,
    AuditEntry,
    Handoff,
    HandoffRead,
    HandoffResolution,
    HandoffStatus,
    Message,
    NotificationSettings,
    Role,
    Run,
    Session,
    SessionStatus,
)
from agentops.runtime.checkpoint import messages_append
from agentops.runtime.context import message_tokens
from agentops.runtime.services import MAX_MESSAGE_CHARS, run_start
from agentops.services import audit_record
from agentops.webhooks.services import webhook_handoff_event
from tracing.live import OPS_GROUP, broadcast, session_group, user_group


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
        raise PermissionError("closing needs the operator role")
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
        status=HandoffStatus.RESOLVED, resolution=HandoffResolution.CLOSED, resolved_at=now
    )
    Session.objects.filter(pk__in=[h.session_id for h in closing]).update(
        status=SessionStatus.CLOSED, operator=None, updated_at=now
    )
    AuditEntry.objects.bulk_create(
        AuditEntry(
            actor=user,
            action="handoff.close",
            session_id=h.session_id,
            target=f"handoff {h.pk}",
            detail={"bulk": True, "was": h.status},
        )
        for h in closing
    )
    for handoff in closing:
        handoff.status = HandoffStatus.RESOLVED
        handoff.resolution = HandoffResolution.CLOSED
        handoff.resolved_at = now
        _resolved_announce(handoff)
    return ids, skipped
