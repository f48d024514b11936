"""`/ws/runs/<id>/` (a run's trace as it grows) and `/ws/ops/` (the deployment's runs,
failures, handoffs and alerts). Viewers and above only; the origin is checked in asgi.py."""

from __future__ import annotations

from agentops.consumers import stream_refusal
from agentops.models import Run
from tracing.consumers import TraceStreamConsumer
from tracing.platform.hub import LiveConsumer
from tracing.platform.live import OPS_GROUP


class RunConsumer(TraceStreamConsumer):
    async def refusal(self) -> int | None:
        return await stream_refusal(self.scope.get("user"), Run, self.trace_id())


class OpsConsumer(LiveConsumer):
    def group_name(self) -> str:
        return OPS_GROUP

    async def refusal(self) -> int | None:
        return await stream_refusal(self.scope.get("user"))
