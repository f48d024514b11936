"""The one live path: every stream of the product (the console's WebSockets, the widget's,
the API's Server-Sent Events, `/v1/` completions and `/mcp/` tool calls) follows a channel
group through this process's `GroupHub`, is ended by the same `AccessWatch` when its access
is revoked, and resumes after a reconnect by `seq` with a `SeqCursor`.

Fan-out (`GroupHub`): the channel layer would hand every connection its own copy of each
event (one Redis delivery, one deserialisation and one JSON encoding per connection). The
hub is a single member of each group per process and event loop; it passes each event to
its members in memory, encoded to JSON once (`LiveEvent`). A member is anything with
`hub_event` and `hub_sync`: a `LiveConsumer`, a `Listener` (an HTTP stream's queue), an
`AccessWatch`.

Close codes (WebSockets): a refused connection is accepted and then closed with its code,
so that the browser sees the code (a handshake refused with HTTP 403 reaches a page as 1006,
which it cannot tell from a network failure) and stops reconnecting: SIGN_IN (4401) not
signed in, FORBIDDEN (4403) without the role, or access revoked, NOT_FOUND (4404) no such
run or session. HTTP streams answer 401/403/404 before they start, and end with their own
last event when their access is revoked mid-stream.

Revocation (`AccessWatch`): a stream joins its access groups before it is authorised — the
person's `user_group`, and the `api_key_group` of the key it came in with, or the widget
key's group — so a revocation between the check and the join is never missed. `ACCESS_REVOKED`
sent to any of them (tracing.platform.live `access_revoke`: a deactivation, a demotion, a
deleted API key, a disabled widget key) ends the stream.

First message (`LiveConsumer.hello_first`): a socket that authenticates with its first
message (the widget's signed end-user token) is accepted, then must say `hello` within
HELLO_TIMEOUT; `refusal()`, the one authorisation hook of every consumer, runs once the
hello (or, without one, the handshake's login or key) is there.

Resume without gaps (`ResumingConsumer`):
1. join the group, then publish a marker to it; events arriving before the marker comes
   back are held. The marker's return proves the subscription is live, so anything
   published before it had committed before we read the database;
2. read what is stored (`stored()`: above the seq the client last saw) and send it;
3. send the held and later live events; a `SeqCursor` drops what was sent already.
HTTP streams do the same with a `Listener` joined before the database is read.

A client that cannot keep up: whatever queued while the previous write was in progress goes
out as one coalesced write; past `max_pending` the backlog is squeezed to the latest event
per subject.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

from tracing.platform.live import ACCESS_REVOKED, user_group
from tracing.platform.logs import get_logger

log = get_logger(__name__)

SIGN_IN = 4401  # not signed in
FORBIDDEN = 4403  # signed in without the role the stream needs, or access revoked
NOT_FOUND = 4404  # no such run or session
HELLO_TIMEOUT = 10.0  # seconds a first-message socket may stay silent
# Set by a door (agentops/websocket.py) in the ASGI scope: the access groups besides the
# user's that the connection depends on (the API key it came in with).
ACCESS_GROUPS_SCOPE_KEY = "agentops.access_groups"

Event = dict[str, Any]


class LiveEvent(dict[str, Any]):
    """An event shared by every member of the process, JSON-encoded at most once."""

    __slots__ = ("_text",)
    _text: str

    @property
    def text(self) -> str:
        try:
            return self._text
        except AttributeError:
            self._text = json.dumps(self)
            return self._text


def encode(message: Event) -> str:
    return message.text if isinstance(message, LiveEvent) else json.dumps(message)


def coalesce(messages: list[Event]) -> list[Event]:
    """Merge adjacent span batches; drop `span.start` of spans whose end is also queued."""
    ended = {s["span_id"] for m in messages if m.get("kind") == "spans" for s in m["spans"]}
    out: list[Event] = []
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
    """What joins a group through the hub: a WebSocket consumer, an HTTP stream's listener."""

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
    def current(cls, layer: Any = None) -> GroupHub:
        loop = asyncio.get_running_loop()
        hub = cls._hubs.get(loop)
        if hub is None:
            hub = cls._hubs[loop] = cls(layer if layer is not None else get_channel_layer())
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

    async def sync(self, group: str, nonce: str) -> None:
        """Publish a marker on the group; its return to a member proves it is subscribed."""
        await self.layer.group_send(group, {"type": "live.sync", "group": group, "nonce": nonce})

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


class SeqCursor:
    """Resume by seq: the highest seq the client has; an event at or below it is not news.
    A reconnecting client says the last seq it saw (a WebSocket's `after`, SSE's
    `Last-Event-ID`); what is stored above it is sent, then the live events above it."""

    def __init__(self, after: int = 0) -> None:
        self.last = after

    def take(self, seq: int) -> bool:
        """Whether `seq` is news (then it counts as sent)."""
        if seq <= self.last:
            return False
        self.last = seq
        return True


def seq_parse(raw: object) -> int | None:
    """A client's last seen seq: a whole number from 0 to 2**31-1 (blank is 0), else None."""
    if raw is None or raw == "":
        return 0
    try:
        value = int(str(raw).strip() or "0")
    except ValueError:
        return None
    return value if 0 <= value <= 2**31 - 1 else None


class Listener:
    """A member of the hub queueing a group's events for one HTTP stream. Past `max_queued`
    the client is far behind: the queue is forgotten and `lost` set (re-read the database)."""

    def __init__(self, max_queued: int = 5000) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.max_queued = max_queued
        self.lost = False

    def hub_event(self, event: LiveEvent) -> None:
        if self.queue.qsize() >= self.max_queued:
            self.lost = True
            while not self.queue.empty():
                self.queue.get_nowait()
        self.queue.put_nowait(event)

    def hub_sync(self, nonce: str) -> None:
        pass


class AccessWatch:
    """A stream's access, watched: a member of its access groups through the hub (the
    person's `user_group`, the key's group), whose `revoked` is set when `ACCESS_REVOKED`
    arrives on any of them. `on_event` sees every event of those groups (the inbox recounts
    on its own). Join it before authorising the stream: a revocation between the check and
    the join would otherwise be missed."""

    def __init__(self, *groups: str, on_event: Callable[[LiveEvent], None] | None = None) -> None:
        self.groups: list[str] = []
        self.revoked = asyncio.Event()
        self.on_event = on_event
        self._hub: GroupHub | None = None
        self._pending = [g for g in groups if g]

    async def __aenter__(self) -> AccessWatch:
        return await self.start()

    async def start(self) -> AccessWatch:
        await self.add(*self._pending)
        self._pending = []
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def add(self, *groups: str) -> None:
        """Watch more groups (a widget's key, known once its hello is read)."""
        if self._hub is None:
            self._hub = GroupHub.current()
        for group in groups:
            if group and group not in self.groups:
                self.groups.append(group)
                await self._hub.join(group, self)

    async def close(self) -> None:
        if self._hub is not None:
            for group in self.groups:
                await self._hub.leave(group, self)
        self.groups = []

    def hub_event(self, event: LiveEvent) -> None:
        if event.get("kind") == ACCESS_REVOKED:
            self.revoked.set()
        if self.on_event is not None:
            self.on_event(event)

    def hub_sync(self, nonce: str) -> None:
        pass


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """A WebSocket following one channel group through the hub, with a bounded outbox."""

    max_pending = 500
    # Kinds a client that cannot keep up may lose first (streamed tokens: their message follows).
    droppable_kinds: frozenset[str] = frozenset()
    # Authenticated by its first message (`{"kind": "hello", …}`, kept in `self.hello`).
    hello_first = False

    async def refusal(self) -> int | None:
        """The close code refusing this connection (SIGN_IN, FORBIDDEN, NOT_FOUND), or None.
        Runs once the hello is read when `hello_first`."""
        return FORBIDDEN

    def group_name(self) -> str | None:
        """The group followed from the start, or None (a later `subscribe` picks one)."""
        raise NotImplementedError

    _closing = False

    async def connect(self) -> None:
        self.group: str | None = None
        self.hello: Event | None = None
        self._outbox: list[Event] = []
        self._wake = asyncio.Event()
        self._opened = False
        self._revoked_close: asyncio.Task[None] | None = None
        self._hello_timer: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None  # started once authorised
        await self.accept()
        # Joined first: a revocation is never missed.
        self.access = await AccessWatch(*self.access_groups(), on_event=self._access_event).start()
        if self.hello_first:
            self._hello_timer = asyncio.get_running_loop().call_later(
                HELLO_TIMEOUT, lambda: self._close_soon(FORBIDDEN)
            )
            return
        await self._open()

    def access_groups(self) -> list[str]:
        """The signed-in person's group and those the door named (their API key's)."""
        user = self.scope.get("user")
        groups = [user_group(user.pk)] if getattr(user, "is_authenticated", False) else []
        return groups + list(self.scope.get(ACCESS_GROUPS_SCOPE_KEY, []))

    async def _open(self) -> None:
        code = await self.refusal()
        if code is not None:
            await self.close(code=code)
            return
        self._opened = True
        self._writer = asyncio.create_task(self._write_loop())  # sends what queued meanwhile
        await self.started()
        group = self.group_name()
        if group is not None:
            await self.subscribe(group)

    async def subscribe(self, group: str) -> None:
        """Follow `group` (instead of the one followed so far)."""
        hub = GroupHub.current(self.channel_layer)
        if self.group is not None:
            await hub.leave(self.group, self)
        self.group = group
        await hub.join(group, self)
        await self.joined()

    async def started(self) -> None:
        """Hook: authorised, not yet listening."""

    async def joined(self) -> None:
        """Hook: the group is joined."""

    async def disconnect(self, code: int) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        access = getattr(self, "access", None)
        if access is not None:
            await access.close()
        if self.group is not None:
            await GroupHub.current(self.channel_layer).leave(self.group, self)
        if self._writer is not None:
            self._writer.cancel()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("kind") == "ping":
            self.enqueue({"kind": "pong"})
        elif self.hello_first and self.hello is None and not self._closing:
            if self._hello_timer is not None:
                self._hello_timer.cancel()
            if not (isinstance(content, dict) and content.get("kind") == "hello"):
                await self.close(code=FORBIDDEN)
                return
            self.hello = content
            await self._open()
        elif self._opened:
            await self.receive_message(content)

    async def receive_message(self, content: Any) -> None:
        """Hook: a message from an authorised client (a ping is answered before)."""
        self.enqueue({"kind": "error", "error": "this stream is read-only; send only pings"})

    def _access_event(self, event: LiveEvent) -> None:
        if event.get("kind") == ACCESS_REVOKED:
            self._close_soon(FORBIDDEN)
        else:
            self.access_event(event)

    def access_event(self, event: LiveEvent) -> None:
        """Hook: another event on the person's own group."""

    def _close_soon(self, code: int) -> None:
        if self._revoked_close is None and not self._closing:
            self._revoked_close = asyncio.ensure_future(self.close(code=code))

    def hub_event(self, event: LiveEvent) -> None:
        self.enqueue(event)

    def hub_sync(self, nonce: str) -> None:
        """A marker published on the group by a connection: only a resuming stream waits."""

    def enqueue(self, event: Event) -> None:
        self._outbox.append(event)
        if len(self._outbox) > self.max_pending:
            self._outbox = self.squeeze(self._outbox)
        self._wake.set()

    def squeeze(self, messages: list[Event]) -> list[Event]:
        """Shrink a backlog the client cannot take: drop the `droppable_kinds`, and if that is
        not enough keep the latest event per subject."""
        if self.droppable_kinds:
            kept = [m for m in messages if m.get("kind") not in self.droppable_kinds]
            if len(kept) <= self.max_pending:
                return [{"kind": "coalesced", "dropped": len(messages) - len(kept)}, *kept]
        latest: dict[tuple[Any, ...], Event] = {}
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
        if self._closing:
            return
        self._closing = True  # this consumer closed the socket: its writer sends no more
        await super().close(code=code, reason=reason)

    async def before_write(self) -> None:
        """Hook: runs in the writer before each batch is taken from the outbox."""

    def prepare(self, messages: list[Event]) -> list[Event]:
        return messages


class ResumingConsumer(LiveConsumer):
    """A stream that sends what is stored, then what is live, with nothing lost between
    (see the module's docstring): subclasses read it in `stored()` and send it, and the
    events held meanwhile, in `resumed()`. Each `subscribe` resumes again."""

    sync_timeout = 2.0

    async def joined(self) -> None:
        self._resumed = False
        self._resuming = False
        self._held: list[Event] = []
        self._nonce = secrets.token_hex(8)
        fallback = getattr(self, "_sync_fallback", None)
        if fallback is not None:
            fallback.cancel()
        assert self.group is not None
        await GroupHub.current(self.channel_layer).sync(self.group, self._nonce)
        self._sync_fallback: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            self.sync_timeout, self._start_resume
        )

    async def disconnect(self, code: int) -> None:
        fallback = getattr(self, "_sync_fallback", None)
        if fallback is not None:
            fallback.cancel()
        await super().disconnect(code)

    def hub_sync(self, nonce: str) -> None:
        if nonce == getattr(self, "_nonce", None):
            self._start_resume()

    def _start_resume(self) -> None:
        if not (self._resumed or self._resuming):
            self._resuming = True
            fallback = self._sync_fallback
            if fallback is not None:
                fallback.cancel()
            self._resume_task = asyncio.ensure_future(self._resume())

    @property
    def is_resumed(self) -> bool:
        return getattr(self, "_resumed", False)

    def hub_event(self, event: LiveEvent) -> None:
        if not self.is_resumed:
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

    def resumed(self, stored: Any, held: list[Event]) -> None:
        """Queue what `stored()` read, then the events held while it was read."""
        raise NotImplementedError
