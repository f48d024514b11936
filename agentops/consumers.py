"""`/ws/sessions/<id>/`: the conversation stream (messages, streamed tokens, tool calls, status).

On connect the client first gets a snapshot from the database, then live events; both
carry message `seq`, so a client dedupes what it got twice.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from agentops.auth import has_role
from agentops.models import ACTIVE_RUN_STATUSES, Run, Session
from agentops.runtime.checkpoint import message_event, status_event
from tracing.consumers import REFUSED
from tracing.live import ACCESS_REVOKED, session_group, user_group

SNAPSHOT_MESSAGES = 200


class SessionConsumer(AsyncJsonWebsocketConsumer):
    group = ""
    user_group = ""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if getattr(user, "is_authenticated", False):  # joined first: a revocation is never missed
            self.user_group = user_group(user.pk)
            await self.channel_layer.group_add(self.user_group, self.channel_name)
        if not await database_sync_to_async(has_role)(user, "viewer"):
            await self.close(code=4401)
            return
        session_id = self.scope["url_route"]["kwargs"]["session_id"]
        self.group = session_group(session_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        snapshot = await database_sync_to_async(self.snapshot)(session_id)
        if snapshot is None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.close(code=4404)
            return
        await self.accept()
        await self.send_json(snapshot)

    @staticmethod
    def snapshot(session_id: Any) -> dict[str, Any] | None:
        session = Session.objects.filter(pk=session_id).first()
        if session is None:
            return None
        messages = list(
            session.messages.select_related("author").order_by("-seq")[:SNAPSHOT_MESSAGES]
        )
        run = (
            Run.objects.select_related("agent")
            .filter(session=session)
            .order_by("-created_at")
            .first()
        )
        return {
            "kind": "snapshot",
            "session": {"id": str(session.pk), "status": session.status},
            "messages": [message_event(m) for m in reversed(messages)],
            "run": status_event(run) if run else None,
            "running": bool(run and run.status in ACTIVE_RUN_STATUSES),
        }

    async def disconnect(self, code: int) -> None:
        if self.user_group:
            await self.channel_layer.group_discard(self.user_group, self.channel_name)
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json(
            {"kind": "error", "error": "this stream is read-only; post messages to the API"}
        )

    async def live_event(self, message: dict[str, Any]) -> None:
        await self.live_batch({"events": [message["event"]]})

    async def live_batch(self, message: dict[str, Any]) -> None:
        for event in message["events"]:
            if event.get("kind") == ACCESS_REVOKED:  # from the per-user group
                await self.close(code=REFUSED)
                return
            await self.send_json(event)
