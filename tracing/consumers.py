"""The trace stream: `TraceStreamConsumer`, a run's spans as they grow, on the one live path
(tracing.platform.hub: the hub, access watch, close codes and resume live there).

Resume without gaps: once the subscription is live (the hub's marker came back) it sends the
stored spans by seq (those above `?after=<seq>` when a client reconnects), then the spans open now (`open_notices`, with the text streamed into
them so far) as `span.start` marked `replay`, then the held and later live spans whose seq
is above the last one sent.

A browser that cannot keep up: when more than `max_pending_spans` wait, they are dropped
and re-read from the database once the browser catches up, so memory stays bounded and
nothing is lost.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from tracing.emit import span_to_event
from tracing.models import Span
from tracing.platform.hub import ResumingConsumer, coalesce, seq_parse
from tracing.platform.live import open_notices, run_group


class TraceStreamConsumer(ResumingConsumer):
    """One trace (a run) as it grows: stored spans first, then live ones, each seq once."""

    max_pending_spans = 5000
    replay_chunk = 500

    def trace_id(self) -> uuid.UUID:
        return self.scope["url_route"]["kwargs"]["run_id"]

    def group_name(self) -> str:
        return run_group(self.trace_id())

    def after(self) -> int:
        """`?after=<seq>`: the last span the client has (a reconnect), 0 for all of them."""
        query = parse_qs(bytes(self.scope.get("query_string", b"")).decode("latin-1"))
        return seq_parse((query.get("after") or ["0"])[0]) or 0

    async def started(self) -> None:
        self._last_seq = self.after()  # highest seq queued for the client
        self._sent_seq = self._last_seq  # highest seq written to the client
        self._pending_spans = 0
        self._catch_up = False

    async def stored(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        spans = await self._stored_after(self._last_seq)
        assert self.group is not None
        opened = await sync_to_async(open_notices, thread_sensitive=False)(self.group)
        return spans, opened

    def resumed(
        self,
        stored: tuple[list[dict[str, Any]], list[dict[str, Any]]],
        held: list[dict[str, Any]],
    ) -> None:
        stored_spans, opened = stored
        ended = {s["span_id"] for s in stored_spans}
        for i in range(0, len(stored_spans), self.replay_chunk):
            self.enqueue(
                {"kind": "spans", "spans": stored_spans[i : i + self.replay_chunk], "replay": True}
            )
        for notice in opened:
            if notice.get("span_id") not in ended:
                self.enqueue({**notice, "replay": True})
                ended.add(notice["span_id"])  # its live notice, if held, is no news
        self.enqueue({"kind": "replay.done", "last_seq": self._last_seq})
        for event in held:
            if event.get("kind") == "span.start" and event.get("span_id") in ended:
                continue
            self.enqueue(event)

    @database_sync_to_async
    def _stored_after(self, seq: int, limit: int | None = None) -> list[dict[str, Any]]:
        qs = Span.objects.filter(trace_id=self.trace_id(), seq__gt=seq).order_by("seq")
        return [span_to_event(s) for s in (qs[:limit] if limit else qs)]

    def enqueue(self, event: dict[str, Any]) -> None:
        if event.get("kind") == "spans":
            spans = event.get("spans", [])
            fresh = [s for s in spans if s["seq"] > self._last_seq]
            if not fresh:
                return
            self._last_seq = max(s["seq"] for s in fresh)
            if len(fresh) != len(spans):
                event = {**event, "spans": fresh}
            self._pending_spans += len(fresh)
            if self._pending_spans > self.max_pending_spans:
                # The client is far behind: forget the queued spans, re-read them later.
                self._outbox = [
                    m for m in self._outbox if m.get("kind") not in ("spans", "span.start")
                ]
                self._pending_spans = 0
                self._catch_up = True
                self._wake.set()
                return
        elif event.get("kind") == "span.text" and self._outbox:
            last = self._outbox[-1]
            if (
                last.get("kind") == "span.text"
                and last.get("span_id") == event.get("span_id")
                and last["at"] + len(last["text"]) == event.get("at")
            ):  # tokens the client has not taken yet go out as one event
                self._outbox[-1] = {**last, "text": last["text"] + event["text"]}
                self._wake.set()
                return
        self._outbox.append(event)
        if len(self._outbox) > self.max_pending:
            spans = [m for m in self._outbox if m.get("kind") == "spans"]
            others = self.squeeze([m for m in self._outbox if m.get("kind") != "spans"])
            self._outbox = coalesce(spans) + others
        self._wake.set()

    async def before_write(self) -> None:
        while self._catch_up:
            self._catch_up = False
            while True:
                chunk = await self._stored_after(self._sent_seq, limit=self.replay_chunk)
                if not chunk:
                    break
                await self.send(
                    text_data=json.dumps({"kind": "spans", "spans": chunk, "catch_up": True})
                )
                self._sent_seq = chunk[-1]["seq"]

    def prepare(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for message in messages:
            if message.get("kind") == "spans":
                spans = message["spans"]
                fresh = [s for s in spans if s["seq"] > self._sent_seq]
                self._pending_spans = max(self._pending_spans - len(spans), 0)
                if not fresh:
                    continue
                self._sent_seq = max(s["seq"] for s in fresh)
                if len(fresh) != len(spans):
                    message = {**message, "spans": fresh}
            out.append(message)
        return out
