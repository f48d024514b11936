"""`/ws/sessions/<id>/`: the conversation stream (messages, streamed tokens, tool calls, status).

A `tracing.platform.hub.ResumingConsumer` like the trace stream: once the subscription is live
the client gets a snapshot of the conversation from the database (agentops/conversation.py),
then the live events; both carry message `seq`, so a client drops what it got twice.
`stream_refusal` is the role check of every stream (the close codes are tracing.platform.hub's).
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.db.models import Model

from agentops.auth import has_role
from agentops.conversation import conversation_serialise
from agentops.models import Session
from agentops.selectors import conversation_get
from tracing.platform.hub import FORBIDDEN, NOT_FOUND, SIGN_IN, ResumingConsumer
from tracing.platform.live import session_group
from tracing.platform.types import Actor, SessionId

SNAPSHOT_MESSAGES = 200


@database_sync_to_async
def stream_refusal(
    user: Actor, model: type[Model] | None = None, pk: SessionId | int | None = None
) -> int | None:
    """Streams are for viewers and above; `model` and `pk` name the row the stream follows."""
    if user is None or not user.is_authenticated:
        return SIGN_IN
    if not has_role(user, "viewer"):
        return FORBIDDEN
    if model is not None and not model._default_manager.filter(pk=pk).exists():
        return NOT_FOUND
    return None


class SessionConsumer(ResumingConsumer):
    droppable_kinds = frozenset({"token"})  # never a message or a status

    def session_id(self) -> SessionId:
        return self.scope["url_route"]["kwargs"]["session_id"]

    def group_name(self) -> str:
        return session_group(self.session_id())

    async def refusal(self) -> int | None:
        return await stream_refusal(self.scope.get("user"), Session, self.session_id())

    async def stored(self) -> dict[str, Any] | None:
        snapshot = await database_sync_to_async(self.snapshot)(self.session_id())
        if snapshot is None:  # deleted since the connection was accepted
            await self.close(code=NOT_FOUND)
        return snapshot

    def resumed(self, stored: dict[str, Any] | None, held: list[dict[str, Any]]) -> None:
        if stored is None:
            return
        self.enqueue(stored)
        for event in held:
            self.enqueue(event)

    @staticmethod
    def snapshot(session_id: SessionId) -> dict[str, Any] | None:
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
