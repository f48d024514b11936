"""Tool calls through the API, by status (default: those waiting for approval)."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from agentops.api import FOUND_ERRORS, ToolCallOut, toolcall_out
from agentops.auth import role_require
from agentops.models import ACTIVE_RUN_STATUSES, ToolCall, ToolCallStatus

router: Router = Router(tags=["handoffs"])


class ToolCallsOut(Schema):
    tool_calls: list[ToolCallOut]


@router.get(
    "/tool-calls",
    operation_id="agentops_api_handoffs_list_tool_calls",
    response={200: ToolCallsOut, **FOUND_ERRORS},
    summary="Tool calls by status (default: those waiting for approval), oldest first",
)
def list_tool_calls(
    request: HttpRequest,
    status: ToolCallStatus = ToolCallStatus.AWAITING_APPROVAL,
    run: uuid.UUID | None = None,
    session: uuid.UUID | None = None,
) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    rows = ToolCall.objects.filter(status=status)
    if status == ToolCallStatus.AWAITING_APPROVAL:  # a call whose run ended awaits nothing
        rows = rows.filter(run__status__in=ACTIVE_RUN_STATUSES)
    if run is not None:
        rows = rows.filter(run_id=run)
    if session is not None:
        rows = rows.filter(run__session_id=session)
    rows = rows.select_related("run__agent", "decided_by").order_by("started_at", "id")
    return {"tool_calls": [toolcall_out(c) for c in rows[:500]]}
