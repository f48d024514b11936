"""Working a conversation: reply, private notes, transfer, hand back or close (one at a
time or many), read markers.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from agentops.auth import has_role, role_require
from agentops.events import event_record
from agentops.models import (
    ACTIVE_RUN_STATUSES,
    Handoff,
    HandoffRead,
    HandoffResolution,
    HandoffStatus,
    Message,
    Role,
    Run,
    Session,
    SessionStatus,
    Team,
)
from agentops.operators.access import (
    HandoffConflict,
    handoff_act_check,
    handoff_work_check,
    username_of,
)
from agentops.operators.assignment.services import (
    handoffs_assign_after_commit,
    handoffs_assign_pending,
)
from agentops.operators.models import PrivateNote
from agentops.people.selectors import team_get
from agentops.runtime.checkpoint import messages_append
from agentops.runtime.context import message_tokens
from agentops.runtime.services import MAX_MESSAGE_CHARS, run_start
from tracing.platform.errors import Invalid, NotFound
from tracing.platform.live import broadcast, user_group


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
    handoff_act_check(handoff=handoff, user=user)
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
        data={"operator": username_of(user)},
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
    handoff_act_check(handoff=handoff, user=user)
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
    handoffs_assign_after_commit(user_id=handoff.claimed_by_id)
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


MAX_NOTE_CHARS = 8000


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
    role_require(user=user, role="operator")
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
    handoff_work_check(handoff=handoff, user=user)
    if target is not None and handoff.claimed_by_id == target.pk:
        raise HandoffConflict(f"{to_operator} already has this conversation")
    previous_holder = handoff.claimed_by_id
    previous = {
        "operator": username_of(handoff.claimed_by) if handoff.claimed_by_id else "",
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
        handoffs_assign_after_commit(user_id=previous_holder)
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


@transaction.atomic
def handoffs_bulk_close(*, handoff_ids: list[int], user: Any) -> tuple[list[int], list[str]]:
    """Close many handoffs at once (duplicates, spam, an outage's flood): open ones, and
    claimed ones of the operator's own (any, for admins). Returns the ids closed and why the
    others were not; each closed one is audited and announced as a single close would be."""
    role_require(user=user, role="operator", refusal="closing needs the operator role")
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
            skipped.append(f"handoff {handoff.pk}: claimed by {username_of(handoff.claimed_by)}")
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
