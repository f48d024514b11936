"""Ratings through the API: rate a conversation an operator closed, read its rating."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from ninja.errors import HttpError
from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from agentops.api import FOUND_ERRORS, Text
from agentops.auth import role_require
from agentops.models import HandoffRating, Session
from agentops.operators.api_shared import WRITE_ERRORS
from agentops.operators.ratings import selectors, services

router: Router = Router(tags=["handoffs"])


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


@router.post(
    "/sessions/{session_id}/rating",
    operation_id="agentops_api_handoffs_rate_session",
    response={201: RatingOut, 200: RatingOut, **WRITE_ERRORS},
    summary="The end user rates the conversation an operator closed (CSAT, 1-5 and a comment); "
    "rating again replaces the rating (200), the first one is 201; 409 if not closed by an operator",
    tags=["ratings"],
)
def rate_session(
    request: HttpRequest, session_id: uuid.UUID, payload: RatingIn
) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    get_object_or_404(Session, pk=session_id)
    had = selectors.handoff_rating_get(session_id=session_id) is not None
    rating = services.handoff_rate(
        session_id=session_id, score=payload.score, comment=payload.comment, rated_by=request.user
    )
    rating = HandoffRating.objects.select_related("handoff__claimed_by").get(pk=rating.pk)
    return Status(200 if had else 201, rating_out(rating))


@router.get(
    "/sessions/{session_id}/rating",
    operation_id="agentops_api_handoffs_get_session_rating",
    response={200: RatingOut, **FOUND_ERRORS},
    summary="The end user's rating of the conversation (404 if none yet)",
    tags=["ratings"],
)
def get_session_rating(request: HttpRequest, session_id: uuid.UUID) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    get_object_or_404(Session, pk=session_id)
    rating = selectors.handoff_rating_get(session_id=session_id)
    if rating is None:
        raise HttpError(404, "no rating for this conversation yet")
    return rating_out(rating)
