"""`/ws/widget/`: the end user's conversation, live, for the widget's frame.

A `tracing.platform.hub.ResumingConsumer` like every stream (the one hub, close codes and
resume), authenticated by its first message (`hello_first`): the frame's signed end-user
token, never a staff login cookie. Protocol (JSON):
- client `{"kind": "hello", "token": …, "session": id|null, "after": seq}`: the server
  answers `state` then the visible messages above `after`, then live events;
- client `{"kind": "watch", "session": id, "after": seq}`: after the first message started
  a conversation, follow it;
- server `message` (seq), `token` (streamed text of the run), `status`, `operator`
  (someone joined), `handback`, `state`; `refused` before a 4403 close.
Only the end user's own session (same agent, same external user) can be followed. A message
is sent only if its seq is above what was sent (`SeqCursor`), so a reconnect with the last
seq the client saw has no gap and no duplicate. The socket watches its widget key's group:
disabling the key closes it with 4403, as revocation closes every stream.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from agentops.models import RunStatus, Session
from agentops.widget import selectors
from agentops.widget.services import EndUser, WidgetRefused, enduser_from_token
from tracing.platform.failures import FailureClass
from tracing.platform.hub import FORBIDDEN, LiveEvent, ResumingConsumer, SeqCursor, seq_parse
from tracing.platform.live import session_group, widget_key_group

STATUS_SHOWN = {
    RunStatus.QUEUED: "thinking",
    RunStatus.RUNNING: "thinking",
    RunStatus.WAITING: "thinking",
    RunStatus.HANDED_OFF: "handed_off",
    RunStatus.SUCCEEDED: "idle",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "idle",
}


class WidgetConsumer(ResumingConsumer):
    hello_first = True
    droppable_kinds = frozenset({"token"})  # a client that cannot keep up gets the message

    enduser: EndUser | None = None
    agent_id = 0
    session: Session | None = None
    after = 0
    cursor: SeqCursor

    def access_groups(self) -> list[str]:
        """The widget key's, once the hello names it (a staff login in the same browser is
        not what this socket stands on)."""
        return []

    def group_name(self) -> str | None:
        return None  # the hello or a watch names the conversation

    async def refusal(self) -> int | None:
        assert self.hello is not None
        token = str(self.hello.get("token", ""))
        try:
            self.enduser, key = await database_sync_to_async(enduser_from_token)(token=token)
            # Read again once its group is joined: a key disabled in between is not missed.
            await self.access.add(widget_key_group(key.pk))
            await database_sync_to_async(enduser_from_token)(token=token)
        except WidgetRefused as exc:
            return await self.refuse(str(exc))
        self.agent_id = key.agent_id
        return None

    async def refuse(self, error: str) -> int:
        await self.send_json({"kind": "refused", "error": error})
        return FORBIDDEN

    async def started(self) -> None:
        assert self.hello is not None
        self.cursor = SeqCursor()
        await self.watch(self.hello.get("session"), self.hello.get("after"))

    async def receive_message(self, content: Any) -> None:
        if isinstance(content, dict) and content.get("kind") == "watch":
            await self.watch(content.get("session"), content.get("after"))

    async def watch(self, session_id: object, after: object) -> None:
        session = await database_sync_to_async(self._session)(session_id)
        if session is None:
            if session_id:
                await self.close(code=await self.refuse("not your conversation"))
            else:
                self.enqueue({"kind": "state", "session_id": None, "status": "new"})
            return
        self.session, self.after = session, seq_parse(after) or 0
        await self.subscribe(session_group(session.pk))

    def _session(self, session_id: object) -> Session | None:
        assert self.enduser is not None
        if session_id:
            return selectors.enduser_session_get(
                agent_id=self.agent_id, enduser=self.enduser, session_id=session_id
            )
        return selectors.enduser_session_current(agent_id=self.agent_id, enduser=self.enduser)

    async def stored(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return await database_sync_to_async(self._snapshot)()

    def _snapshot(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        assert self.session is not None
        session = Session.objects.select_related("operator").get(pk=self.session.pk)
        return (
            selectors.session_state(session=session),
            selectors.session_messages_after(session=session, after=self.after),
        )

    def resumed(
        self, stored: tuple[dict[str, Any], list[dict[str, Any]]], held: list[dict[str, Any]]
    ) -> None:
        state, messages = stored
        self.cursor = SeqCursor(self.after)
        for event in [state, *messages, *held]:
            self.enqueue(event)

    def hub_event(self, event: LiveEvent) -> None:
        shown = self.shown(event)
        if shown is not None:
            super().hub_event(LiveEvent(shown))

    def prepare(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            m for m in messages if m.get("kind") != "message" or self.cursor.take(int(m["seq"]))
        ]

    @staticmethod
    def shown(event: dict[str, Any]) -> dict[str, Any] | None:
        """What the end user sees of a conversation's event (never tool traffic)."""
        kind = event.get("kind")
        if kind == "message":
            return selectors.message_visible_event(event["message"])
        if kind == "token":
            return {"kind": "token", "run_id": event["run_id"], "text": event["text"]}
        if kind == "run.status":
            status = STATUS_SHOWN.get(event.get("status", ""), "idle")
            if event.get("error_class") == FailureClass.GUARDRAIL:
                status = "idle"  # blocked: the guardrail's message was the agent's reply
            return {"kind": "status", "run_id": event["run_id"], "status": status}
        if kind == "handoff.claimed":
            return {"kind": "operator", "name": event.get("operator")}
        if kind == "handoff.resolved":
            return {"kind": "handback", "resolution": event.get("resolution")}
        return None
