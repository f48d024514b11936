"""`/ws/runs/<id>/` (a run's trace as it grows) and `/ws/ops/` (the deployment's runs,
failures, handoffs and alerts). Viewers and above only; the origin is checked in asgi.py."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from agentops.auth import has_role
from agentops.models import Run
from tracing.consumers import LiveConsumer, TraceStreamConsumer
from tracing.live import OPS_GROUP


@database_sync_to_async
def _may_view(user: Any, run_id: Any = None) -> bool:
    if not has_role(user, "viewer"):
        return False
    return run_id is None or Run.objects.filter(pk=run_id).exists()


class RunConsumer(TraceStreamConsumer):
    async def authorize(self) -> bool:
        return await _may_view(self.scope.get("user"), self.trace_id())


class OpsConsumer(LiveConsumer):
    def group_name(self) -> str:
        return OPS_GROUP

    async def authorize(self) -> bool:
        return await _may_view(self.scope.get("user"))
