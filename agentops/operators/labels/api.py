"""Labels through the API: label a conversation, take a label off."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema
from ninja.errors import HttpError
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from agentops.auth import role_require
from agentops.models import Session
from agentops.operators.access import session_held_by_another
from agentops.operators.api_shared import WRITE_ERRORS, Filled
from agentops.operators.labels import selectors, services
from agentops.operators.models import LabelColour
from tracing.platform.errors import Forbidden

router: Router = Router(tags=["handoffs"])


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


def _labelable(request: HttpRequest, session_id: uuid.UUID) -> Session:
    session = get_object_or_404(Session, pk=session_id)
    if session_held_by_another(session=session, user=request.user):
        raise Forbidden("another operator has this conversation; an admin can reassign it")
    return session


@router.post(
    "/sessions/{session_id}/labels",
    operation_id="agentops_api_handoffs_add_label",
    response={200: LabelsOut, **WRITE_ERRORS},
    summary="Label a conversation (the label is created if new)",
)
def add_label(request: HttpRequest, session_id: uuid.UUID, payload: LabelIn) -> dict[str, Any]:
    role_require(user=request.user, role="operator")
    session = _labelable(request, session_id)
    services.session_label_add(
        session=session, name=payload.name, colour=payload.colour, actor=request.user
    )
    return {"labels": [label.name for label in selectors.session_labels(session=session)]}


@router.post(
    "/sessions/{session_id}/labels/remove",
    operation_id="agentops_api_handoffs_remove_label",
    response={200: LabelsOut, **WRITE_ERRORS},
    summary="Take a label off a conversation",
)
def remove_label(request: HttpRequest, session_id: uuid.UUID, payload: LabelIn) -> dict[str, Any]:
    role_require(user=request.user, role="operator")
    session = _labelable(request, session_id)
    label = session.labels.filter(name__iexact=payload.name.strip()).first()
    if label is None:
        raise HttpError(404, f"name: the conversation has no label {payload.name!r}")
    services.session_label_remove(session=session, label=label, actor=request.user)
    return {"labels": [label.name for label in selectors.session_labels(session=session)]}
