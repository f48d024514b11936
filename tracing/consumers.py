"""WebSocket stream machinery: a per-process hub joining each channel group once, a bounded
outbox per connection, and for traces a replay of what is stored merged with what arrives.

Every stream of the product is a `LiveConsumer`: one base, one hub, one outbox, one set of
close codes. Authorisation lives in the app that knows users and roles: subclasses override
`refusal()` (the base refuses everyone). See agentops/consumers.py and
agentops/observe/consumers.py. A refused connection is accepted and then closed with its code,
so that the browser sees the code (a handshake refused with HTTP 403 reaches a page as 1006,
which it cannot tell from a network failure) and stops reconnecting:
4401 not signed in, 4403 signed in without the role, 4404 no such run or session.

Fan-out (`GroupHub`): the channel layer would hand every connection its own copy of each
event (one Redis delivery, one deserialisation and one JSON encoding per connection). The
hub is a single member of each group per process and event loop; it passes each event to
the connections in memory, encoded to JSON once.

Resume without gaps (`ResumingConsumer`: the trace and the conversation streams):
1. join the group, then publish a marker to it; events arriving before the marker comes
   back are held. The marker's return proves the subscription is live, so anything
   published before it had committed before we read the database;
2. read what is stored and send it: for a trace (`TraceStreamConsumer`) the stored spans by
   seq, then the spans open now (`open_notices`, with the text streamed into them so far)
   as `span.start` marked `replay`; for a conversation its snapshot;
3. send the held and later live events (for a trace, the spans whose seq is above the last
   one sent; a conversation's client drops the messages it has by seq).

A browser (or a server) that cannot keep up: whatever queued while the previous write was
in progress goes out as one coalesced write (span batches merged, `span.start` of spans
that already ended dropped). When more than `max_pending_spans` wait, they are dropped
and re-read from the database once the browser catches up, so memory stays bounded and
nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
import weakref
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

from tracing.emit import span_to_event
from tracing.models import Span
from tracing.platform.live import ACCESS_REVOKED, open_notices, run_group, user_group
from tracing.platform.logs import get_logger

log = get_logger(__name__)

SIGN_IN = 4401  # not signed in
FORBIDDEN = 4403  # signed in, without the role the stream needs
NOT_FOUND = 4404  # no such run or session


class LiveEvent(dict):
    """An event shared by every connection of the process, JSON-encoded at most once."""

    __slots__ = ("_text",)
    _text: str

    @property
    def text(self) -> str:
        try:
            return self._text
        except AttributeError:
            self._text = json.dumps(self)
            return self._text


def encode(message: dict[str, Any]) -> str:
    return message.text if isinstance(message, LiveEvent) else json.dumps(message)


def coalesce(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge adjacent span batches; drop `span.start` of spans whose end is also queued."""
    ended = {s["span_id"] for m in messages if m.get("kind") == "spans" for s in m["spans"]}
    out: list[dict[str, Any]] = []
    for message in messages:
        kind = message.get("kind")
        if kind == "span.start" and message.get("span_id") in ended:
            continue
        if kind == "spans" and out and out[-1].get("kind") == "spans":
            previous = out[-1]
            out[-1] = {
                **previous,
                "spans": previous["spans"] + message["spans"],
                "replay": bool(previous.get("replay") and message.get("replay")),
            }
            continue
        out.append(message)
    return out


class HubMember(Protocol):
    """What joins a group through the hub: a WebSocket consumer, an event stream."""

    def hub_event(self, event: LiveEvent) -> None: ...

    def hub_sync(self, nonce: str) -> None: ...


class GroupHub:
    """This process's (and event loop's) one membership of each group, shared in memory."""

    _hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupHub] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.members: dict[str, set[HubMember]] = {}
        self.lock = asyncio.Lock()
        self.pump: asyncio.Task[None] | None = None

    @classmethod
    def current(cls, layer: Any) -> GroupHub:
        loop = asyncio.get_running_loop()
        hub = cls._hubs.get(loop)
        if hub is None:
            hub = cls._hubs[loop] = cls(layer)
        return hub

    async def join(self, group: str, member: HubMember) -> None:
        async with self.lock:
            if self.channel is None:
                self.channel = await self.layer.new_channel("hub.")
                self.pump = asyncio.create_task(self._pump())
            members = self.members.setdefault(group, set())
            members.add(member)
            if len(members) == 1:
                await self.layer.group_add(group, self.channel)

    async def leave(self, group: str, member: HubMember) -> None:
        async with self.lock:
            members = self.members.get(group)
            if not members:
                return
            members.discard(member)
            if not members:
                del self.members[group]
                await self.layer.group_discard(group, self.channel)

    async def _pump(self) -> None:
        assert self.channel is not None
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live.hub_receive_failed")
                await asyncio.sleep(0.5)
                continue
            members = self.members.get(message.get("group", ""))
            if not members:
                continue
            if message.get("type") in ("live.event", "live.batch"):
                for raw in message["events"] if "events" in message else [message["event"]]:
                    event = LiveEvent(raw)
                    for member in list(members):
                        member.hub_event(event)
            elif message.get("type") == "live.sync":
                for member in list(members):
                    member.hub_sync(message.get("nonce", ""))


class AccessWatch:
    """The revocation of a person's access, for a stream that is not a `LiveConsumer` (the
    API's event streams, `/v1/` completions): a member of their `user_group` through the hub,
    whose `revoked` is set when `ACCESS_REVOKED` arrives there — the event that closes their
    WebSockets with FORBIDDEN. Join it before authorising the stream, as `LiveConsumer` does:
    a revocation between the check and the join would otherwise be missed."""

    def __init__(self, user_id: Any) -> None:
        self.group = user_group(user_id)
        self.revoked = asyncio.Event()
        self._hub: GroupHub | None = None

    async def __aenter__(self) -> AccessWatch:
        self._hub = GroupHub.current(get_channel_layer())
        await self._hub.join(self.group, self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._hub is not None:
            await self._hub.leave(self.group, self)

    def hub_event(self, event: LiveEvent) -> None:
        if event.get("kind") == ACCESS_REVOKED:
            self.revoked.set()

    def hub_sync(self, nonce: str) -> None:
        pass


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Forwards one channel group's events to the client through a bounded outbox."""

    max_pending = 500

    async def refusal(self) -> int | None:
        """The close code refusing this connection (SIGN_IN, FORBIDDEN, NOT_FOUND), or None."""
        return FORBIDDEN

    def group_name(self) -> str:
        raise NotImplementedError

    _closing = False

    async def connect(self) -> None:
        self.group: str | None = None
        self._hub: GroupHub | None = None
        self._outbox: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.user_group: str | None = None
        user = self.scope.get("user")
        if getattr(user, "is_authenticated", False):  # joined first: a revocation is never missed
            self.user_group = user_group(user.pk)
            await self.channel_layer.group_add(self.user_group, self.channel_name)
        code = await self.refusal()
        if code is not None:
            await self.accept()
            await self.close(code=code)
            return
        self.group = self.group_name()
        await self.accept()
        self._writer = asyncio.create_task(self._write_loop())
        await self.started()
        self._hub = GroupHub.current(self.channel_layer)
        await self._hub.join(self.group, self)
        await self.joined()

    async def started(self) -> None:
        """Hook: accepted, not yet listening."""

    async def joined(self) -> None:
        """Hook: the group is joined."""

    async def disconnect(self, code: int) -> None:
        if self.user_group:
            await self.channel_layer.group_discard(self.user_group, self.channel_name)
        if self._hub is not None and self.group:
            await self._hub.leave(self.group, self)
        if self._writer is not None:
            self._writer.cancel()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("kind") == "ping":
            self.enqueue({"kind": "pong"})
        else:
            self.enqueue({"kind": "error", "error": "this stream is read-only; send only pings"})

    async def live_event(self, message: dict[str, Any]) -> None:
        """Only the per-user group reaches the consumer itself (streams go through the hub)."""
        if message["event"].get("kind") == ACCESS_REVOKED:
            await self.close(code=FORBIDDEN)

    async def live_batch(self, message: dict[str, Any]) -> None:
        if any(e.get("kind") == ACCESS_REVOKED for e in message["events"]):
            await self.close(code=FORBIDDEN)

    def hub_event(self, event: LiveEvent) -> None:
        self.enqueue(event)

    def hub_sync(self, nonce: str) -> None:
        """A marker published on the group by a connection: only the trace stream waits for one."""

    def enqueue(self, event: dict[str, Any]) -> None:
        self._outbox.append(event)
        if len(self._outbox) > self.max_pending:
            self._outbox = self.squeeze(self._outbox)
        self._wake.set()

    def squeeze(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Shrink a backlog the client cannot take: keep the latest event per subject."""
        latest: dict[tuple[Any, ...], dict[str, Any]] = {}
        for m in messages:
            subject = (
                m.get("kind"),
                m.get("run_id"),
                m.get("handoff_id"),
                m.get("tool_call_id"),
                m.get("rule_id"),
                m.get("span_id"),
            )
            latest.pop(subject, None)
            latest[subject] = m
        dropped = len(messages) - len(latest)
        return [{"kind": "coalesced", "dropped": dropped}, *latest.values()]

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self.before_write()
                batch, self._outbox = self._outbox, []
                for message in self.prepare(coalesce(batch)):
                    if not await self._deliver(encode(message)):
                        return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("live.write_failed", group=self.group)
            await self.close()

    async def _deliver(self, text: str) -> bool:
        """Send one frame; False once the socket is closed. A client that went away (a closed
        tab) before its disconnect reached this consumer is normal: the server refuses the
        send (uvicorn: ClientDisconnected, an OSError, or a RuntimeError once it has seen the
        close) and there is nothing left to close."""
        if self._closing:
            return False
        try:
            await self.send(text_data=text)
        except (OSError, RuntimeError) as exc:
            log.info("live.client_gone", group=self.group, error=type(exc).__name__)
            return False
        return True

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self._closing = True  # this consumer closed the socket: its writer sends no more
        await super().close(code=code, reason=reason)

    async def before_write(self) -> None:
        """Hook: runs in the writer before each batch is taken from the outbox."""

    def prepare(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return messages


class ResumingConsumer(LiveConsumer):
    """A stream that sends what is stored, then what is live, with nothing lost between
    (see the module's docstring): subclasses read it in `stored()` and send it, and the
    events held meanwhile, in `resumed()`."""

    sync_timeout = 2.0

    async def started(self) -> None:
        self._resumed = False
        self._resuming = False
        self._held: list[dict[str, Any]] = []
        self._nonce = secrets.token_hex(8)
        self._sync_fallback: asyncio.TimerHandle | None = None

    async def joined(self) -> None:
        await self.channel_layer.group_send(
            self.group, {"type": "live.sync", "group": self.group, "nonce": self._nonce}
        )
        self._sync_fallback = asyncio.get_running_loop().call_later(
            self.sync_timeout, self._start_resume
        )

    async def disconnect(self, code: int) -> None:
        fallback = getattr(self, "_sync_fallback", None)
        if fallback is not None:
            fallback.cancel()
        await super().disconnect(code)

    def hub_sync(self, nonce: str) -> None:
        if nonce == self._nonce:
            self._start_resume()

    def _start_resume(self) -> None:
        if not (self._resumed or self._resuming):
            self._resuming = True
            fallback = self._sync_fallback
            if fallback is not None:
                fallback.cancel()
            self._resume_task = asyncio.ensure_future(self._resume())

    def hub_event(self, event: LiveEvent) -> None:
        if not getattr(self, "_resumed", False):
            if hasattr(self, "_held"):
                self._held.append(event)
            return
        self.enqueue(event)

    async def _resume(self) -> None:
        try:
            stored = await self.stored()
        except Exception:
            log.exception("live.replay_failed", group=self.group)
            await self.close()
            return
        self._resumed = True
        held, self._held = self._held, []
        self.resumed(stored, held)

    async def stored(self) -> Any:
        """What is stored now (read once the subscription is live)."""
        raise NotImplementedError

    def resumed(self, stored: Any, held: list[dict[str, Any]]) -> None:
        """Queue what `stored()` read, then the events held while it was read."""
        raise NotImplementedError


class TraceStreamConsumer(ResumingConsumer):
    """One trace (a run) as it grows: stored spans first, then live ones, each seq once."""

    max_pending_spans = 5000
    replay_chunk = 500

    def trace_id(self) -> uuid.UUID:
        return self.scope["url_route"]["kwargs"]["run_id"]

    def group_name(self) -> str:
        return run_group(self.trace_id())

    async def started(self) -> None:
        await super().started()
        self._last_seq = 0  # highest seq queued for the client
        self._sent_seq = 0  # highest seq written to the client
        self._pending_spans = 0
        self._catch_up = False

    async def stored(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        spans = await self._stored_after(0)
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
