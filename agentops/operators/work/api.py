"""Working a conversation through the API: reply, hand back, close; private notes; transfer.
Operators act on handoffs they hold (admins on any); a race lost or a wrong state is a 409
naming why.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from agentops.api import FOUND_ERRORS, HandoffOut, MessageOut, Text
from agentops.conversation import HandoffJson, message_serialise
from agentops.operators.api_shared import (
    WRITE_ERRORS,
    Filled,
    HandoffId,
    handoff_for,
    handoff_fresh,
    handoff_workable_or_403,
)
from agentops.operators.work import selectors, services
from agentops.runtime.services import MAX_MESSAGE_CHARS

router: Router = Router(tags=["handoffs"])


class ReplyIn(Schema):
    content: Text = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


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


class HandBackOut(Schema):
    handoff: HandoffOut
    run: uuid.UUID


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
    "/handoffs/{handoff_id}/reply",
    operation_id="agentops_api_handoffs_reply_handoff",
    response={201: MessageOut, **WRITE_ERRORS},
    summary="Answer the end user in a handoff you hold",
)
def reply_handoff(
    request: HttpRequest, handoff_id: HandoffId, payload: ReplyIn
) -> Status[dict[str, Any]]:
    handoff = handoff_for(request, handoff_id, role="operator")
    message = services.handoff_reply(handoff=handoff, user=request.user, content=payload.content)
    return Status(201, message_serialise(message))


@router.post(
    "/handoffs/{handoff_id}/hand-back",
    operation_id="agentops_api_handoffs_hand_back_handoff",
    response={202: HandBackOut, **WRITE_ERRORS},
    summary="Give the conversation back to the agent; it answers in a new run",
)
def hand_back_handoff(request: HttpRequest, handoff_id: HandoffId) -> Status[dict[str, Any]]:
    run = services.handoff_hand_back(
        handoff=handoff_for(request, handoff_id, role="operator"), user=request.user
    )
    return Status(202, {"handoff": handoff_fresh(handoff_id), "run": run.pk})


@router.post(
    "/handoffs/{handoff_id}/close",
    operation_id="agentops_api_handoffs_close_handoff",
    response={200: HandoffOut, **WRITE_ERRORS},
    summary="Resolve a handoff you hold and close its session",
)
def close_handoff(request: HttpRequest, handoff_id: HandoffId) -> HandoffJson:
    services.handoff_close(
        handoff=handoff_for(request, handoff_id, role="operator"), user=request.user
    )
    return handoff_fresh(handoff_id)


@router.get(
    "/handoffs/{handoff_id}/notes",
    operation_id="agentops_api_handoffs_list_notes",
    response={200: NotesOut, **FOUND_ERRORS},
    summary="The private notes of the handoff's conversation (operators only; never end users')",
)
def list_notes(request: HttpRequest, handoff_id: HandoffId) -> dict[str, Any]:
    handoff = handoff_workable_or_403(request, handoff_id)
    return {"notes": [note_out(n) for n in selectors.session_notes(session=handoff.session)]}


@router.post(
    "/handoffs/{handoff_id}/notes",
    operation_id="agentops_api_handoffs_add_note",
    response={201: NoteOut, **WRITE_ERRORS},
    summary="Leave a private note for operators in the conversation",
)
def add_note(
    request: HttpRequest, handoff_id: HandoffId, payload: NoteIn
) -> Status[dict[str, Any]]:
    note = services.handoff_note_add(
        handoff=handoff_workable_or_403(request, handoff_id),
        user=request.user,
        content=payload.content,
    )
    return Status(201, note_out(note))


@router.post(
    "/handoffs/{handoff_id}/transfer",
    operation_id="agentops_api_handoffs_transfer_handoff",
    response={200: HandoffOut, **WRITE_ERRORS},
    summary="Transfer to another operator or to a team's queue, with a private note",
)
def transfer_handoff(
    request: HttpRequest, handoff_id: HandoffId, payload: TransferIn
) -> HandoffJson:
    handoff = handoff_for(request, handoff_id, role="operator")
    kind, _, name = payload.to.partition(":")
    services.handoff_transfer(
        handoff=handoff,
        user=request.user,
        to_operator=name if kind == "operator" else "",
        to_team=name if kind == "team" else "",
        note=payload.note,
    )
    return handoff_fresh(handoff_id)
