"""What the inbox's JSON API routes share (each feature's api.py; mounted by agentops/api.py).

The routes keep the operationIds /api/openapi.json published when they were one module,
agentops/api_handoffs.py (`agentops_api_handoffs_<function>`): clients generated from the
schema call them by those names.
"""

from __future__ import annotations

from typing import Annotated

from django.http import HttpRequest
from ninja import Path
from ninja.errors import HttpError
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from agentops.api import BODY_ERRORS, FOUND_ERRORS, ErrorOut, _no_nul
from agentops.auth import role_require
from agentops.conversation import HandoffJson, handoff_detail_serialise
from agentops.models import Handoff
from agentops.operators.access import handoff_workable_by
from agentops.operators.queue.selectors import handoff_get
from tracing.platform.errors import Forbidden

HandoffId = Annotated[int, Path(ge=1, le=2**63 - 1)]
WRITE_ERRORS = {409: ErrorOut, **FOUND_ERRORS, **BODY_ERRORS}


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


def handoff_or_404(handoff_id: int) -> Handoff:
    handoff = handoff_get(handoff_id=handoff_id)
    if handoff is None:
        raise HttpError(404, f"no handoff {handoff_id}")
    return handoff


def handoff_for(request: HttpRequest, handoff_id: int, *, role: str) -> Handoff:
    """The handoff a route acts on: the caller's role is checked first (403), then it must
    exist (404)."""
    role_require(user=request.user, role=role)
    return handoff_or_404(handoff_id)


def handoff_workable_or_403(request: HttpRequest, handoff_id: int) -> Handoff:
    """The handoff, if the caller, an operator, may work it (as on its page): not another
    operator's."""
    handoff = handoff_for(request, handoff_id, role="operator")
    if not handoff_workable_by(handoff=handoff, user=request.user):
        raise Forbidden(f"{handoff.claimed_by} has this conversation; an admin can reassign it")
    return handoff


def handoff_fresh(handoff_id: int) -> HandoffJson:
    return handoff_detail_serialise(handoff_or_404(handoff_id))
