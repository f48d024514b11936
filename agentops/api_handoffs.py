"""The takeover through the API: claim, reply, hand back, close and reassign a handoff; work
it (private notes, transfer, snooze, labels); and the tool calls waiting for approval. The same services as the operators' pages
(agentops/operators/services.py), under the same role rules: operators act on handoffs they
hold (admins on any), only admins reassign. A race lost or a wrong state is a 409 naming why.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Path, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from agentops.api import (
    BODY_ERRORS,
    FOUND_ERRORS,
    ErrorOut,
    HandoffOut,
    MessageOut,
    Text,
    ToolCallOut,
    _no_nul,
    require,
    toolcall_out,
)
from agentops.conversation import HandoffJson, handoff_detail_serialise, message_serialise
from agentops.models import ACTIVE_RUN_STATUSES, HandoffRating, Session, ToolCall, ToolCallStatus
from agentops.operators import selectors, services
from agentops.operators.models import LabelColour
from agentops.runtime.services import MAX_MESSAGE_CHARS

router: Router = Router(tags=["handoffs"])

HandoffId = Annotated[int, Path(ge=1, le=2**63 - 1)]
WRITE_ERRORS = {409: ErrorOut, **FOUND_ERRORS, **BODY_ERRORS}


class ReplyIn(Schema):
    content: Text = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be blank")
    return value


# Text with something besides white space in it (what the services keep after stripping).
Filled = Annotated[
    str,
    AfterValidator(_no_nul),
    AfterValidator(_not_blank),
    Field(json_schema_extra={"pattern": "^[^\\x00]*[^\\x00\\s\\x1c-\\x1f\\x85][^\\x00]*$"}),
]


class NoteIn(Schema):
    content: Filled = Field(min_length=1, max_length=services.MAX_NOTE_CHARS)


class NoteOut(Schema):
    id: int
    session: uuid.UUID
    handoff: int | None
    author: str | None
    content: str
    transfer_to: str = Field(description="Set on a transfer's note: whom it went to")
    created_at: str


class NotesOut(Schema):
    notes: list[NoteOut]


class TransferIn(Schema):
    to: str = Field(
        pattern=r"^(operator|team):[^\x00]+$",
        max_length=160,
        description="`operator:<username>` (theirs at once) or `team:<slug>` (its open queue)",
    )
    note: Text = Field(default="", max_length=services.MAX_NOTE_CHARS)


class SnoozeIn(Schema):
    minutes: int | None = Field(
        ge=1,
        le=services.MAX_SNOOZE_DAYS * 24 * 60 - 1,
        description="Back in the queue after this many minutes; null: when the user writes again",
    )


def _colour(value: str) -> str:
    if value and value not in LabelColour.values:
        raise PydanticCustomError("colour", "choose one of the palette's colours or none")
    return value


Colour = Annotated[
    str, AfterValidator(_colour), Field(json_schema_extra={"enum": ["", *LabelColour.values]})
]


class LabelIn(Schema):
    name: Filled = Field(min_length=1, max_length=services.MAX_LABEL_CHARS)
    colour: Colour = Field(default="", description="For a new label: a colour of the palette")


class LabelsOut(Schema):
    labels: list[str]


class ReassignIn(Schema):
    operator: Text = Field(min_length=1, max_length=150, description="The operator's username")


def _json_number(value: Any) -> Any:
    """A JSON number only: "5" or true is no score (4.0 is 4, as JSON Schema has it)."""
    if isinstance(value, bool | str):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


class RatingIn(Schema):
    score: Annotated[int, BeforeValidator(_json_number)] = Field(
        ge=1, le=5, description="1 (very unhappy) to 5 (very happy)"
    )
    comment: Text = Field(default="", max_length=services.MAX_RATING_COMMENT)


class RatingOut(Schema):
    session: uuid.UUID
    handoff: int
    operator: str | None = Field(description="Who closed the conversation")
    score: int
    comment: str
    created_at: str
    updated_at: str


def rating_out(rating: Any) -> dict[str, Any]:
    handoff = rating.handoff
    return {
        "session": handoff.session_id,
        "handoff": handoff.pk,
        "operator": handoff.claimed_by.get_username() if handoff.claimed_by else None,
        "score": rating.score,
        "comment": rating.comment,
        "created_at": rating.created_at.isoformat(),
        "updated_at": rating.updated_at.isoformat(),
    }


class HandBackOut(Schema):
    handoff: HandoffOut
    run: uuid.UUID


class ToolCallsOut(Schema):
    tool_calls: list[ToolCallOut]


def _handoff(handoff_id: int) -> Any:
    handoff = selectors.handoff_get(handoff_id=handoff_id)
    if handoff is None:
        raise HttpError(404, f"no handoff {handoff_id}")
    return handoff


def _workable(request: HttpRequest, handoff_id: int) -> Any:
    """The handoff, if the caller may work it (as on its page): not another operator's."""
    handoff = _handoff(handoff_id)
    if not selectors.handoff_workable_by(handoff=handoff, user=request.user):
        raise HttpError(
            403, f"{handoff.claimed_by} has this conversation; an admin can reassign it"
        )
    return handoff


def _fresh(handoff_id: int) -> HandoffJson:
    return handoff_detail_serialise(_handoff(handoff_id))


def note_out(note: Any) -> dict[str, Any]:
    return {
        "id": note.pk,
        "session": str(note.session_id),
        "handoff": note.handoff_id,
        "author": note.author.get_username() if note.author else None,
        "content": note.content,
        "transfer_to": note.transfer_to,
        "created_at": note.created_at.isoformat(),
    }


@router.post(
    "/handoffs/{handoff_id}/claim",
    response={200: HandoffOut, **WRITE_ERRORS},
    summary="Claim an open handoff (one of several racing operators wins; the others get 409)",
)
def claim_handoff(request: HttpRequest, handoff_id: HandoffId) -> HandoffJson:
    require(request, "operator")
    _handoff(handoff_id)
    services.handoff_claim(handoff_id=handoff_id, user=request.user)
    return _fresh(handoff_id)


@router.post(
    "/handoffs/{handoff_id}/reply",
    response={201: MessageOut, **WRITE_ERRORS},
    summary="Answer the end user in a handoff you hold",
)
def reply_handoff(
    request: HttpRequest, handoff_id: HandoffId, payload: ReplyIn
) -> Status[dict[str, Any]]:
    require(request, "operator")
    handoff = _handoff(handoff_id)
    message = services.handoff_reply(handoff=handoff, user=request.user, content=payload.content)
    return Status(201, message_serialise(message))


@router.post(
    "/handoffs/{handoff_id}/hand-back",
    response={202: HandBackOut, **WRITE_ERRORS},
    summary="Give the conversation back to the agent; it answers in a new run",
)
def hand_back_handoff(request: HttpRequest, handoff_id: HandoffId) -> Status[dict[str, Any]]:
    require(request, "operator")
    run = services.handoff_hand_back(handoff=_handoff(handoff_id), user=request.user)
    return Status(202, {"handoff": _fresh(handoff_id), "run": run.pk})


@router.post(
    "/handoffs/{handoff_id}/close",
    response={200: HandoffOut, **WRITE_ERRORS},
    summary="Resolve a handoff you hold and close its session",
)
def close_handoff(request: HttpRequest, handoff_id: HandoffId) -> HandoffJson:
    require(request, "operator")
    services.handoff_close(handoff=_handoff(handoff_id), user=request.user)
    return _fresh(handoff_id)


@router.post(
    "/handoffs/{handoff_id}/reassign",
    response={200: HandoffOut, **WRITE_ERRORS},
    summary="Move an open or claimed handoff to another operator (admins)",
)
def reassign_handoff(
    request: HttpRequest, handoff_id: HandoffId, payload: ReassignIn
) -> HandoffJson:
    require(request, "admin")
    handoff = _handoff(handoff_id)
    services.handoff_reassign(handoff=handoff, user=request.user, to_username=payload.operator)
    return _fresh(handoff_id)


@router.get(
    "/handoffs/{handoff_id}/notes",
    response={200: NotesOut, **FOUND_ERRORS},
    summary="The private notes of the handoff's conversation (operators only; never end users')",
)
def list_notes(request: HttpRequest, handoff_id: HandoffId) -> dict[str, Any]:
    require(request, "operator")
    handoff = _workable(request, handoff_id)
    return {"notes": [note_out(n) for n in selectors.session_notes(session=handoff.session)]}


@router.post(
    "/handoffs/{handoff_id}/notes",
    response={201: NoteOut, **WRITE_ERRORS},
    summary="Leave a private note for operators in the conversation",
)
def add_note(
    request: HttpRequest, handoff_id: HandoffId, payload: NoteIn
) -> Status[dict[str, Any]]:
    require(request, "operator")
    note = services.handoff_note_add(
        handoff=_workable(request, handoff_id), user=request.user, content=payload.content
    )
    return Status(201, note_out(note))


@router.post(
    "/handoffs/{handoff_id}/transfer",
    response={200: HandoffOut, **WRITE_ERRORS},
    summary="Transfer to another operator or to a team's queue, with a private note",
)
def transfer_handoff(
    request: HttpRequest, handoff_id: HandoffId, payload: TransferIn
) -> HandoffJson:
    require(request, "operator")
    handoff = _handoff(handoff_id)
    kind, _, name = payload.to.partition(":")
    services.handoff_transfer(
        handoff=handoff,
        user=request.user,
        to_operator=name if kind == "operator" else "",
        to_team=name if kind == "team" else "",
        note=payload.note,
    )
    return _fresh(handoff_id)


@router.post(
    "/handoffs/{handoff_id}/snooze",
    response={200: HandoffOut, **WRITE_ERRORS},
    summary="Hide it from the active queue for some minutes or until the user writes again",
)
def snooze_handoff(request: HttpRequest, handoff_id: HandoffId, payload: SnoozeIn) -> HandoffJson:
    require(request, "operator")
    handoff = _handoff(handoff_id)
    until = timezone.now() + timedelta(minutes=payload.minutes) if payload.minutes else None
    services.handoff_snooze(handoff=handoff, user=request.user, until=until)
    return _fresh(handoff_id)


@router.post(
    "/handoffs/{handoff_id}/wake",
    response={200: HandoffOut, **WRITE_ERRORS},
    summary="Bring a snoozed handoff back to the queue now",
)
def wake_handoff(request: HttpRequest, handoff_id: HandoffId) -> HandoffJson:
    require(request, "operator")
    services.handoff_wake(handoff=_handoff(handoff_id), user=request.user)
    return _fresh(handoff_id)


def _labelable(request: HttpRequest, session_id: uuid.UUID) -> Session:
    session = get_object_or_404(Session, pk=session_id)
    if selectors.session_held_by_another(session=session, user=request.user):
        raise HttpError(403, "another operator has this conversation; an admin can reassign it")
    return session


@router.post(
    "/sessions/{session_id}/labels",
    response={200: LabelsOut, **WRITE_ERRORS},
    summary="Label a conversation (the label is created if new)",
)
def add_label(request: HttpRequest, session_id: uuid.UUID, payload: LabelIn) -> dict[str, Any]:
    require(request, "operator")
    session = _labelable(request, session_id)
    services.session_label_add(
        session=session, name=payload.name, colour=payload.colour, actor=request.user
    )
    return {"labels": [label.name for label in selectors.session_labels(session=session)]}


@router.post(
    "/sessions/{session_id}/labels/remove",
    response={200: LabelsOut, **WRITE_ERRORS},
    summary="Take a label off a conversation",
)
def remove_label(request: HttpRequest, session_id: uuid.UUID, payload: LabelIn) -> dict[str, Any]:
    require(request, "operator")
    session = _labelable(request, session_id)
    label = session.labels.filter(name__iexact=payload.name.strip()).first()
    if label is None:
        raise HttpError(404, f"name: the conversation has no label {payload.name!r}")
    services.session_label_remove(session=session, label=label, actor=request.user)
    return {"labels": [label.name for label in selectors.session_labels(session=session)]}


@router.get(
    "/tool-calls",
    response={200: ToolCallsOut, **FOUND_ERRORS},
    summary="Tool calls by status (default: those waiting for approval), oldest first",
)
def list_tool_calls(
    request: HttpRequest,
    status: ToolCallStatus = ToolCallStatus.AWAITING_APPROVAL,
    run: uuid.UUID | None = None,
    session: uuid.UUID | None = None,
) -> dict[str, Any]:
    require(request, "viewer")
    rows = ToolCall.objects.filter(status=status)
    if status == ToolCallStatus.AWAITING_APPROVAL:  # a call whose run ended awaits nothing
        rows = rows.filter(run__status__in=ACTIVE_RUN_STATUSES)
    if run is not None:
        rows = rows.filter(run_id=run)
    if session is not None:
        rows = rows.filter(run__session_id=session)
    rows = rows.select_related("run__agent", "decided_by").order_by("started_at", "id")
    return {"tool_calls": [toolcall_out(c) for c in rows[:500]]}


@router.post(
    "/sessions/{session_id}/rating",
    response={201: RatingOut, 200: RatingOut, **WRITE_ERRORS},
    summary="The end user rates the conversation an operator closed (CSAT, 1-5 and a comment); "
    "rating again replaces the rating (200), the first one is 201; 409 if not closed by an operator",
    tags=["ratings"],
)
def rate_session(
    request: HttpRequest, session_id: uuid.UUID, payload: RatingIn
) -> Status[dict[str, Any]]:
    require(request, "operator")
    get_object_or_404(Session, pk=session_id)
    had = selectors.handoff_rating_get(session_id=session_id) is not None
    rating = services.handoff_rate(
        session_id=session_id, score=payload.score, comment=payload.comment, rated_by=request.user
    )
    rating = HandoffRating.objects.select_related("handoff__claimed_by").get(pk=rating.pk)
    return Status(200 if had else 201, rating_out(rating))


@router.get(
    "/sessions/{session_id}/rating",
    response={200: RatingOut, **FOUND_ERRORS},
    summary="The end user's rating of the conversation (404 if none yet)",
    tags=["ratings"],
)
def get_session_rating(request: HttpRequest, session_id: uuid.UUID) -> dict[str, Any]:
    require(request, "viewer")
    get_object_or_404(Session, pk=session_id)
    rating = selectors.handoff_rating_get(session_id=session_id)
    if rating is None:
        raise HttpError(404, "no rating for this conversation yet")
    return rating_out(rating)
