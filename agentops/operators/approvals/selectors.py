"""Tool calls waiting for an operator's approval."""

from __future__ import annotations

from django.db.models import QuerySet

from agentops.models import ACTIVE_RUN_STATUSES, ToolCall, ToolCallStatus


def approvals_pending() -> QuerySet[ToolCall]:
    return (
        ToolCall.objects.filter(
            status=ToolCallStatus.AWAITING_APPROVAL, run__status__in=ACTIVE_RUN_STATUSES
        )
        .select_related("run__agent", "run__session")
        .order_by("started_at")
    )
