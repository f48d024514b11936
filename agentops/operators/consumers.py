"""`/ws/inbox/`: an operator's unread count, live.

A `tracing.platform.hub.ResumingConsumer` on the ops group: once the subscription is live it
reads the count from the database (`unread_counts`) and sends it, so a client that
reconnects gets the count as it is now, whatever it missed while away. Afterwards, each
event that can change the count (a handoff created, claimed or resolved, an end user's
message, the operator's own read markers moving) makes it recount, at most once per
`recount_delay`. Of the ops events only those that add a private note (a note, a transfer)
are forwarded, as ids without text (`{"kind": "note", "handoff_id", "session_id"}`): an open
page of that conversation then fetches its new notes (static/operators/operators.js). The client notifies when the count grows
(static/operators/notify.js).

The socket is also the operator's presence (operators/presence/services.py): an operator page holds
it open, so opening it brings back what they chose (online after the sweep made them away),
it beats every third of OPERATOR_AWAY_AFTER_SECONDS while open, and closing it starts the
away clock. The first message carries the operator's presence, and a change of it (another
tab, the sweep) is forwarded as `{"kind": "presence", "presence"}`: the page's banner and
switch follow it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from agentops.auth import has_role
from agentops.operators.presence.selectors import operator_presence
from agentops.operators.presence.services import operator_page_seen
from agentops.operators.queue.selectors import notification_sound
from agentops.operators.work.selectors import unread_counts
from agentops.operators.work.services import UNREAD_CHANGED
from tracing.platform.hub import FORBIDDEN, SIGN_IN, LiveEvent, ResumingConsumer
from tracing.platform.live import OPS_GROUP
from tracing.platform.logs import get_logger

log = get_logger(__name__)

NOTE_KINDS = frozenset({"handoff.note", "handoff.transferred"})  # a transfer leaves a note
RECOUNT_KINDS = frozenset(
    {"handoff.created", "handoff.claimed", "handoff.resolved", "session.message"}
)


@database_sync_to_async
def _refusal(user: Any) -> int | None:
    if user is None or not user.is_authenticated:
        return SIGN_IN
    return None if has_role(user, "operator") else FORBIDDEN


class InboxConsumer(ResumingConsumer):
    recount_delay = 0.2

    def group_name(self) -> str:
        return OPS_GROUP

    async def refusal(self) -> int | None:
        return await _refusal(self.scope.get("user"))

    async def started(self) -> None:
        self._recount: asyncio.TimerHandle | None = None
        self._username = self.scope["user"].get_username()
        await database_sync_to_async(operator_page_seen)(user=self.scope["user"], opened=True)
        self._beat = asyncio.ensure_future(self._heartbeat())

    async def _heartbeat(self) -> None:
        every = max(1.0, settings.OPERATOR_AWAY_AFTER_SECONDS / 3)
        while True:
            await asyncio.sleep(every)
            try:
                await database_sync_to_async(operator_page_seen)(
                    user=self.scope["user"], opened=False
                )
            except Exception as exc:  # the next beat tries again; the sweep waits minutes
                log.warning("inbox.heartbeat_failed", error=str(exc))

    async def stored(self) -> dict[str, Any]:
        return await self._counts()

    async def _counts(self) -> dict[str, Any]:
        return await database_sync_to_async(self._read)(self.scope["user"])

    @staticmethod
    def _read(user: Any) -> dict[str, Any]:
        sound = notification_sound(user=user)
        presence = operator_presence(user=user)
        return {"kind": "unread", **unread_counts(user=user), "sound": sound, "presence": presence}

    def resumed(self, stored: dict[str, Any], held: list[dict[str, Any]]) -> None:
        self.enqueue({**stored, "initial": True})  # newer than anything held

    def hub_event(self, event: LiveEvent) -> None:
        if not self.is_resumed:
            return
        if event.get("kind") in RECOUNT_KINDS:
            self._recount_soon()
        elif event.get("kind") == "operator.presence" and event.get("operator") == self._username:
            self.enqueue({"kind": "presence", "presence": event["presence"]})
        elif event.get("kind") in NOTE_KINDS:
            self.enqueue(
                {
                    "kind": "note",
                    "handoff_id": event["handoff_id"],
                    "session_id": event["session_id"],
                }
            )

    def access_event(self, event: LiveEvent) -> None:
        """The operator's own group: their read markers moved."""
        if event.get("kind") == UNREAD_CHANGED and self.is_resumed:
            self._recount_soon()

    def _recount_soon(self) -> None:
        if self._recount is None:
            self._recount = asyncio.get_running_loop().call_later(
                self.recount_delay, self._recount_now
            )

    def _recount_now(self) -> None:
        self._recount = None

        async def send() -> None:
            self.enqueue(await self._counts())

        self._recount_task = asyncio.ensure_future(send())

    async def disconnect(self, code: int) -> None:
        recount = getattr(self, "_recount", None)
        if recount is not None:
            recount.cancel()
        beat = getattr(self, "_beat", None)
        if beat is not None:
            beat.cancel()
            await database_sync_to_async(operator_page_seen)(user=self.scope["user"], opened=False)
        await super().disconnect(code)
