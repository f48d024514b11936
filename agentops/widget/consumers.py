"""`/ws/widget/`: the end user's conversation, live, for the widget's frame.

Authenticated by the frame's signed end-user token (the first message), never by a staff
login cookie. Protocol (JSON):
- client `{"kind": "hello", "token": …, "session": id|null, "after": seq}`: the server
  answers `state` then the visible messages above `after`, then live events;
- client `{"kind": "watch", "session": id, "after": seq}`: after the first message started
  a conversation, follow it;
- server `message` (seq), `token` (streamed text of the run), `status`, `operator`
  (someone joined), `handback`, `state`.
Only the end user's own session (same agent, same external user) can be followed. A live
event is sent only if its seq is above what was sent, so a reconnect with the last seq the
client saw has no gap and no duplicate: Channels hands this consumer one message at a time,
so group events that arrive while the stored messages are read wait behind them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from agentops.models import RunStatus
from agentops.widget import selectors
from agentops.widget.services import EndUser, WidgetRefused, enduser_from_token
from tracing.platform.live import session_group

REFUSED = 4403
HELLO_TIMEOUT = 10.0  # seconds
STATUS_SHOWN = {
    RunStatus.QUEUED: "thinking",
    RunStatus.RUNNING: "thinking",
    RunStatus.WAITING: "thinking",
    RunStatus.HANDED_OFF: "handed_off",
    RunStatus.SUCCEEDED: "idle",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "idle",
}


class WidgetConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.enduser: EndUser | None = None
        self.agent_id = 0
        self.group = ""
        self.sent_seq = 0
        await self.accept()
        # A socket that never says who it is does not stay open.
        self.hello_timer = asyncio.get_running_loop().call_later(
            HELLO_TIMEOUT, lambda: asyncio.ensure_future(self._hello_missing())
        )

    async def _hello_missing(self) -> None:
        if self.enduser is None:
            await self.close(code=REFUSED)

    async def disconnect(self, code: int) -> None:
        self.hello_timer.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("kind")
        if kind == "hello" and self.enduser is None:
            try:
                self.enduser, key = await database_sync_to_async(enduser_from_token)(
                    token=str(content.get("token", ""))
                )
            except WidgetRefused as exc:
                await self.send_json({"kind": "refused", "error": str(exc)})
                await self.close(code=REFUSED)
                return
            self.hello_timer.cancel()
            self.agent_id = key.agent_id
            await self.watch(content.get("session"), content.get("after"))
        elif kind == "watch" and self.enduser is not None:
            await self.watch(content.get("session"), content.get("after"))
        elif kind == "ping":
            await self.send_json({"kind": "pong"})
        elif self.enduser is None:
            await self.close(code=REFUSED)

    async def watch(self, session_id: Any, after: Any) -> None:
        assert self.enduser is not None
        try:
            after_seq = max(int(after or 0), 0)
        except (TypeError, ValueError):
            after_seq = 0
        snapshot = await database_sync_to_async(self._snapshot)(session_id, after_seq)
        if snapshot is None:
            if session_id:
                await self.send_json({"kind": "refused", "error": "not your conversation"})
                await self.close(code=REFUSED)
            else:
                await self.send_json({"kind": "state", "session_id": None, "status": "new"})
            return
        state, messages, group = snapshot
        if group != self.group:
            if self.group:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = group
            await self.channel_layer.group_add(group, self.channel_name)
            # Stored messages are read again now that the group is joined: a message
            # committed in between is then either read here or received live (or both).
            snapshot = await database_sync_to_async(self._snapshot)(state["session_id"], after_seq)
            assert snapshot is not None
            state, messages, _ = snapshot
        self.sent_seq = after_seq
        await self.send_json(state)
        for message in messages:
            await self._send_message(message)

    def _snapshot(
        self, session_id: Any, after: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]], str] | None:
        assert self.enduser is not None
        if session_id:
            session = selectors.enduser_session_get(
                agent_id=self.agent_id, enduser=self.enduser, session_id=session_id
            )
        else:
            session = selectors.enduser_session_current(
                agent_id=self.agent_id, enduser=self.enduser
            )
        if session is None:
            return None
        return (
            selectors.session_state(session=session),
            selectors.session_messages_after(session=session, after=after),
            session_group(session.pk),
        )

    async def _send_message(self, message: dict[str, Any]) -> None:
        if message["seq"] <= self.sent_seq:
            return
        self.sent_seq = message["seq"]
        await self.send_json(message)

    async def live_event(self, message: dict[str, Any]) -> None:
        await self._forward(message["event"])

    async def live_batch(self, message: dict[str, Any]) -> None:
        for event in message["events"]:
            await self._forward(event)

    async def live_sync(self, message: dict[str, Any]) -> None:
        """A staff stream's resume marker on the same group (tracing.consumers): not ours."""

    async def _forward(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "message":
            visible = selectors.message_visible_event(event["message"])
            if visible is not None:
                await self._send_message(visible)
        elif kind == "token":
            await self.send_json(
                {"kind": "token", "run_id": event["run_id"], "text": event["text"]}
            )
        elif kind == "run.status":
            status = STATUS_SHOWN.get(event.get("status", ""), "idle")
            await self.send_json({"kind": "status", "run_id": event["run_id"], "status": status})
        elif kind == "handoff.claimed":
            await self.send_json({"kind": "operator", "name": event.get("operator")})
        elif kind == "handoff.resolved":
            await self.send_json({"kind": "handback", "resolution": event.get("resolution")})
