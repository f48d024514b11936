"""`/ws/sessions/<id>/`: the conversation stream (messages, streamed tokens, tool calls, status).

On connect the client first gets a snapshot from the database, then live events; both
carry message `seq`, so a client dedupes what it got twice.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from agentops.auth import has_role
from agentops.conversation import conversation_serialise
from agentops.models import Session
from agentops.selectors import conversation_get
from tracing.live import session_group

SNAPSHOT_MESSAGES = 200


class SessionConsumer(AsyncJsonWebsocketConsumer):
    group = ""

    async def connect(self) -> None:
        user = self.scope.get("user")
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
        conversation = conversation_get(session=session, limit=SNAPSHOT_MESSAGES)
        # The API's shape; `session` stays the object the snapshot has always carried.
        return {
            **conversation_serialise(conversation),
            "kind": "snapshot",
            "session": {"id": str(session.pk), "status": session.status},
        }

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json(
            {"kind": "error", "error": "this stream is read-only; post messages to the API"}
        )

    async def live_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])

    async def live_batch(self, message: dict[str, Any]) -> None:
        for event in message["events"]:
            await self.send_json(event)
