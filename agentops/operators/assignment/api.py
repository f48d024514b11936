"""Assignment through the API: claim a handoff (one of racing operators wins, the others get
409), reassign it (admins).
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field

from agentops.api import HandoffOut, Text
from agentops.conversation import HandoffJson
from agentops.operators.api_shared import WRITE_ERRORS, HandoffId, handoff_for, handoff_fresh
from agentops.operators.assignment import services

router: Router = Router(tags=["handoffs"])


class ReassignIn(Schema):
    operator: Text = Field(min_length=1, max_length=150, description="The operator's username")


@router.post(
    "/handoffs/{handoff_id}/claim",
    operation_id="agentops_api_handoffs_claim_handoff",
    response={200: HandoffOut, **WRITE_ERRORS},
    summary="Claim an open handoff (one of several racing operators wins; the others get 409)",
)
def claim_handoff(request: HttpRequest, handoff_id: HandoffId) -> HandoffJson:
    handoff_for(request, handoff_id, role="operator")
    services.handoff_claim(handoff_id=handoff_id, user=request.user)
    return handoff_fresh(handoff_id)


@router.post(
    "/handoffs/{handoff_id}/reassign",
    operation_id="agentops_api_handoffs_reassign_handoff",
    response={200: HandoffOut, **WRITE_ERRORS},
    summary="Move an open or claimed handoff to another operator (admins)",
)
def reassign_handoff(
    request: HttpRequest, handoff_id: HandoffId, payload: ReassignIn
) -> HandoffJson:
    handoff = handoff_for(request, handoff_id, role="admin")
    services.handoff_reassign(handoff=handoff, user=request.user, to_username=payload.operator)
    return handoff_fresh(handoff_id)
