"""Live events for API clients as Server-Sent Events:
`GET /api/sessions/<id>/events` and `GET /api/runs/<id>/events`.

A small ASGI application in front of Django (asgi.py), not a Django view: a stream lasts as
long as its client, and through Django's middleware stack each request would keep a thread
(its sync middleware's) and a pooled database connection (DatabaseConnectionMiddleware's)
for that long. Here a stream is a coroutine on the server's event loop: it reads Postgres
briefly through the shared thread pool and holds nothing between reads, and its events come
from the process's one membership of each channel group (tracing.platform.hub.GroupHub);
headers, the key and JSON errors are read and written by agentops/asgi_http.py.

Resuming (tracing.platform.hub `SeqCursor`): every stored event carries its sequence number as the SSE `id` — a message's
`seq` in its session, a span's `seq` in its run's trace. A client that reconnects with
`Last-Event-ID` (or `?last_event_id=`) gets everything stored after it, then live events,
each stored one once: the stream joins the group before it reads the database, and drops
live events it has already sent. Events that are not stored (streamed `token`s, `span.start`
notices) and changes of state carry no id; on every (re)connect the session stream sends a
`state` event with the session's status, its latest run, its open handoff and the approvals
it waits for, so a client that missed them is current again.

Revocation: a stream joins its `AccessWatch` (the person's group, and the key's when it came
with one) before it is authorised; when its access is revoked (a deactivation, a demotion, its
key deleted: the event that closes WebSockets with 4403) it sends a last `access.revoked`
event and ends. A client that reconnects is authorised again: a deactivated person's key or
login, or a deleted key, is refused (401), a demoted one gets what their new role allows.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from agentops.asgi_http import (
    ASGIApp,
    HttpError,
    InvalidKey,
    Receive,
    Response,
    Scope,
    Send,
    access_watch,
    disconnected,
    header,
    key_holder,
)
from agentops.auth import KeyHolder, has_role
from agentops.conversation import (
    handoff_detail_serialise,
    message_serialise,
    run_status_serialise,
)
from agentops.models import (
    ACTIVE_RUN_STATUSES,
    FINISHED_RUN_STATUSES,
    Handoff,
    HandoffStatus,
    Message,
    Run,
    Session,
    ToolCall,
    ToolCallStatus,
)
from tracing.emit import span_to_event
from tracing.models import Span
from tracing.platform.hub import AccessWatch, GroupHub, Listener, SeqCursor, seq_parse
from tracing.platform.live import ACCESS_REVOKED, open_notices, run_group, session_group
from tracing.platform.logs import get_logger

log = get_logger(__name__)

ROUTE = re.compile(r"^/api/(?P<kind>sessions|runs)/(?P<id>[0-9a-fA-F-]{36})/events/?$")
KEEPALIVE_SECONDS = 15.0
REPLAY_CHUNK = 500
MAX_QUEUED = 5000  # live events waiting for a slow client; past that, re-read from Postgres
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # a proxy must pass each event on at once
]


def _db(func: Any) -> Any:
    # The shared pool, not a thread of the stream's own; the connection goes back after.
    return database_sync_to_async(func, thread_sensitive=False)


def frame(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class _Stream:
    """One client's stream; subclasses know what is stored and how it is numbered."""

    def __init__(self, object_id: uuid.UUID, after: int) -> None:
        self.object_id = object_id
        self.cursor = SeqCursor(after)  # the highest stored seq sent
        self.done = False
        self.started = False  # the response's headers were sent

    def group(self) -> str:
        raise NotImplementedError

    async def replay(self) -> list[bytes]:
        raise NotImplementedError

    def forward(self, event: dict[str, Any]) -> list[bytes]:
        raise NotImplementedError

    async def finished(self) -> bool:
        return False


class SessionStream(_Stream):
    def group(self) -> str:
        return session_group(self.object_id)

    async def replay(self) -> list[bytes]:
        out = []
        while True:
            chunk = await _db(self._messages)(self.cursor.last)
            for message in chunk:
                if self.cursor.take(message["seq"]):
                    out.append(
                        frame("message", {"kind": "message", "message": message}, message["seq"])
                    )
            if len(chunk) < REPLAY_CHUNK:
                break
        out.append(frame("state", await _db(self._state)()))
        return out

    def _messages(self, after: int) -> list[dict[str, Any]]:
        rows = (
            Message.objects.filter(session_id=self.object_id, seq__gt=after)
            .select_related("author", "agent")
            .order_by("seq")[:REPLAY_CHUNK]
        )
        return [message_serialise(m) for m in rows]

    def _state(self) -> dict[str, Any]:
        from agentops.api import toolcall_out

        session = Session.objects.select_related("operator").get(pk=self.object_id)
        run = Run.objects.select_related("agent").filter(session=session).order_by("-created_at")
        handoff = (
            Handoff.objects.filter(
                session=session, status__in=[HandoffStatus.OPEN, HandoffStatus.CLAIMED]
            )
            .select_related("session__agent", "claimed_by")
            .order_by("-created_at")
            .first()
        )
        approvals = ToolCall.objects.filter(
            run__session=session,
            status=ToolCallStatus.AWAITING_APPROVAL,
            run__status__in=ACTIVE_RUN_STATUSES,
        ).select_related("run__agent", "decided_by")
        latest = run.first()
        return {
            "kind": "state",
            "session": {
                "id": str(session.pk),
                "status": session.status,
                "user": session.external_user,
                "operator": session.operator.get_username() if session.operator else None,
            },
            "run": run_status_serialise(latest) if latest else None,
            "handoff": handoff_detail_serialise(handoff) if handoff else None,
            "pending_approvals": [
                {**toolcall_out(c), "run": str(c.run_id), "session": str(c.run.session_id)}
                for c in approvals.order_by("started_at")
            ],
            "last_event_id": self.cursor.last,
        }

    def forward(self, event: dict[str, Any]) -> list[bytes]:
        kind = str(event.get("kind", "event"))
        if kind == "message":
            seq = event["message"]["seq"]
            if not self.cursor.take(seq):
                return []  # sent already, from the database
            return [frame("message", event, seq)]
        return [frame(kind, event)]


class RunStream(_Stream):
    def group(self) -> str:
        return run_group(self.object_id)

    async def replay(self) -> list[bytes]:
        # Read the status first: a run's last spans are stored with its final status, so if
        # it had finished, the spans read next include them.
        finished = await self.finished()
        out = []
        while True:
            chunk = await _db(self._spans)(self.cursor.last)
            for span in chunk:
                if self.cursor.take(span["seq"]):
                    out += self._span(span)
            if len(chunk) < REPLAY_CHUNK:
                break
        sent = set()
        for notice in await _db(open_notices)(self.group()):
            if notice.get("span_id") not in sent:
                sent.add(notice.get("span_id"))
                out.append(frame("span.start", {**notice, "replay": True}))
        self.done = self.done or finished
        return out

    def _spans(self, after: int) -> list[dict[str, Any]]:
        rows = Span.objects.filter(trace_id=self.object_id, seq__gt=after).order_by("seq")
        return [span_to_event(s) for s in rows[:REPLAY_CHUNK]]

    def _span(self, span: dict[str, Any]) -> list[bytes]:
        status = (span.get("attributes") or {}).get("status")
        if (span["name"] == "run.status" and status in FINISHED_RUN_STATUSES) or span[
            "name"
        ] == "handoff":
            self.done = True  # the run ended: the stream ends after this batch
        return [frame("span", {"kind": "span", **span}, span["seq"])]

    def forward(self, event: dict[str, Any]) -> list[bytes]:
        kind = str(event.get("kind", "event"))
        if kind == "spans":
            out = []
            for span in event.get("spans", []):
                if self.cursor.take(span["seq"]):
                    out += self._span(span)
            return out
        return [frame(kind, event)]

    async def finished(self) -> bool:
        status = await _db(
            lambda: Run.objects.filter(pk=self.object_id).values_list("status", flat=True).first()
        )()
        return status in FINISHED_RUN_STATUSES


def _error(status: int, error: str, **headers: str) -> HttpError:
    return HttpError(status, {"error": error}, headers)


def _refuse_key() -> HttpError:
    return _error(401, "invalid API key", **{"WWW-Authenticate": "Bearer"})


@database_sync_to_async
def _authorize(user: User, kind: str, object_id: uuid.UUID) -> HttpError | None:
    if not User.objects.filter(pk=user.pk, is_active=True).exists():
        return _error(401, "this account is deactivated")  # since the key or login was read
    if not has_role(user, "viewer"):
        return _error(403, "this needs the viewer role")
    model = Session if kind == "sessions" else Run
    if not model.objects.filter(pk=object_id).exists():
        return _error(404, "not found")
    return None


class EventStreams:
    """Serves the two event streams; every other HTTP request goes on to `app` (Django)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.with_cookie = AuthMiddlewareStack(self.serve)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not ROUTE.match(scope.get("path", "")):
            return await self.app(scope, receive, send)
        try:  # the key's verdict is final, as in the JSON API
            holder = await key_holder(scope)
        except InvalidKey:
            return await Response(send).error(_refuse_key())
        if holder is not None:
            return await self.serve({**scope, "user": holder.user}, receive, send, holder)
        return await self.with_cookie(scope, receive, send)

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, holder: KeyHolder | None = None
    ) -> None:
        response = Response(send)
        match = ROUTE.match(scope["path"])
        assert match is not None
        if scope["method"] != "GET":
            return await response.error(_error(405, "method not allowed: use GET", Allow="GET"))
        user = scope.get("user")
        if user is None or not getattr(user, "is_authenticated", False):
            return await response.error(
                _error(
                    401,
                    "authentication required: send 'Authorization: Bearer <api key>'",
                    **{"WWW-Authenticate": "Bearer"},
                )
            )
        try:
            object_id = uuid.UUID(match["id"])
        except ValueError:
            object_id = None
        after = _last_event_id(scope)
        async with access_watch(user, holder) as access:
            refused = _error(404, "not found") if object_id is None else None
            if object_id is not None:
                refused = await _authorize(user, match["kind"], object_id)
            if refused is None and after is None:
                refused = _error(400, "Last-Event-ID: must be a whole number (the last event's id)")
            if refused is not None:
                return await response.error(refused)
            assert object_id is not None and after is not None
            stream_class = SessionStream if match["kind"] == "sessions" else RunStream
            await self.stream(stream_class(object_id, after), receive, send, access)

    async def stream(
        self, stream: _Stream, receive: Receive, send: Send, access: AccessWatch
    ) -> None:
        listener = Listener(MAX_QUEUED)
        hub = GroupHub.current()
        await hub.join(stream.group(), listener)  # before reading Postgres: nothing falls between
        writer = asyncio.ensure_future(self._write(stream, listener, send))
        watcher = asyncio.ensure_future(disconnected(receive))
        revoked = asyncio.ensure_future(access.revoked.wait())
        try:
            done, _ = await asyncio.wait(
                {writer, watcher, revoked}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (writer, watcher, revoked):
                task.cancel()
            await hub.leave(stream.group(), listener)
        if writer in done:
            if not writer.cancelled() and writer.exception() is not None:
                log.error("events.stream_failed", exc_info=writer.exception())
        elif revoked in done and watcher not in done:
            await asyncio.wait({writer})  # its cancellation has run: no write is half done
            await self._end_revoked(stream, send)

    @staticmethod
    async def _end_revoked(stream: _Stream, send: Send) -> None:
        error = "access revoked (deactivated, or the role changed); reconnect to be authorised"
        if not stream.started:
            await Response(send).error(_error(403, error))
            return
        body = frame(ACCESS_REVOKED, {"kind": ACCESS_REVOKED, "error": error})
        await send({"type": "http.response.body", "body": body})

    async def _write(self, stream: _Stream, listener: Listener, send: Send) -> None:
        stream.started = True
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        body = [b"retry: 2000\n\n", *await stream.replay()]
        while True:
            if body:
                await send(
                    {"type": "http.response.body", "body": b"".join(body), "more_body": True}
                )
            if stream.done:
                await send({"type": "http.response.body", "body": frame("end", {"kind": "end"})})
                return
            try:
                event = await asyncio.wait_for(listener.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                body = [b": keepalive\n\n"]
                if await stream.finished():  # ended with no event of its own (cancelled)
                    body += await stream.replay()
                continue
            if listener.lost:
                listener.lost = False
                body = await stream.replay()
                continue
            body = stream.forward(event)
            while not listener.queue.empty() and not listener.lost:  # what else waits, in one write
                body += stream.forward(listener.queue.get_nowait())


def _last_event_id(scope: Scope) -> int | None:
    raw = header(scope, "last-event-id")
    if raw is None:
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin1"))
        raw = (query.get("last_event_id") or ["0"])[0]
    return seq_parse(raw)
