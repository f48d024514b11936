"""The queue through the API: snooze a handoff (for some minutes or until the user writes)
and wake it.
"""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest
from django.utils import timezone
from ninja import Router, Schema
from pydantic import Field

from agentops.api import HandoffOut
from agentops.conversation import HandoffJson
from agentops.operators.api_shared import WRITE_ERRORS, HandoffId, handoff_for, handoff_fresh
from agentops.operators.queue import services

router: Router = Router(tags=["handoffs"])


class SnoozeIn(Schema):
    minutes: int | None = Field(
        ge=1,
        le=services.MAX_SNOOZE_DAYS * 24 * 60 - 1,
        description="Back in the queue after this many minutes; null: when the user writes again",
    )


@router.post(
    "/handoffs/{handoff_id}/snooze",
    operation_id="agentops_api_handoffs_snooze_handoff",
    response={200: HandoffOut, **WRITE_ERRORS},
    summary="Hide it from the active queue for some minutes or until the user writes again",
)
def snooze_handoff(request: HttpRequest, handoff_id: HandoffId, payload: SnoozeIn) -> HandoffJson:
    handoff = handoff_for(request, handoff_id, role="operator")
    until = timezone.now() + timedelta(minutes=payload.minutes) if payload.minutes else None
    services.handoff_snooze(handoff=handoff, user=request.user, until=until)
    return handoff_fresh(handoff_id)


@router.post(
    "/handoffs/{handoff_id}/wake",
    operation_id="agentops_api_handoffs_wake_handoff",
    response={200: HandoffOut, **WRITE_ERRORS},
    summary="Bring a snoozed handoff back to the queue now",
)
def wake_handoff(request: HttpRequest, handoff_id: HandoffId) -> HandoffJson:
    services.handoff_wake(
        handoff=handoff_for(request, handoff_id, role="operator"), user=request.user
    )
    return handoff_fresh(handoff_id)
