"""The one small ASGI HTTP helper of the doors that are not Django views: the API's event
streams (agentops/event_streams.py), `/v1/` (openai_compat/app.py) and `/mcp/`
(mcp_server/app.py). Each request's headers, body (within DATA_UPLOAD_MAX_MEMORY_SIZE), its
API key (read once, by `agentops.auth.bearer_token` and `api_key_holder`), its JSON errors,
and the `AccessWatch` of the key, so that revoking access (a deactivation, a demotion, a
deleted key) reaches every one of these streams as it reaches the WebSockets.

Each door keeps the error body its clients expect (an OpenAI error on `/v1/`, an OAuth one on
`/mcp/`, `{"error": text}` on the event streams): an `HttpError` carries the body as the
door shaped it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from agentops.auth import KeyHolder, api_key_holder, bearer_token
from tracing.platform.hub import AccessWatch
from tracing.platform.live import user_group

Scope = dict[str, Any]
# A message's shape depends on its type (and Django, Starlette and Channels each spell it
# their way), so that every ASGI app fits.
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpError(Exception):
    """A JSON error answer: its status, its body as the door shapes it, its headers."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body
        self.headers = headers or {}


class InvalidKey(Exception):
    """An `Authorization: Bearer` key was sent and lets nobody in (unknown, or its user is
    deactivated): the door's 401."""


def headers_read(scope: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers, names in lower case (the last of a repeated one)."""
    return {
        bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1").strip()
        for k, v in scope.get("headers", [])
    }


def header(scope: Mapping[str, Any], name: str) -> str | None:
    return headers_read(scope).get(name.lower())


async def body_read(receive: Receive, too_large: Callable[[int], HttpError]) -> bytes | None:
    """The request's body, or None if the client went away before sending it all;
    `too_large(limit)` is raised past DATA_UPLOAD_MAX_MEMORY_SIZE."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2**31
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def key_holder(scope: Mapping[str, Any]) -> KeyHolder | None:
    """Who the request's API key lets in; None when it sent none (no header, a blank one,
    another scheme); InvalidKey when the key lets nobody in."""
    token = bearer_token(header(scope, "authorization"))
    if token is None:
        return None
    holder = await database_sync_to_async(api_key_holder, thread_sensitive=False)(token)
    if holder is None:
        raise InvalidKey()
    return holder


def access_watch(user: Any, holder: KeyHolder | None = None) -> AccessWatch:
    """The watch of a stream's access: the person's group, and the key's when it came with one
    (join it before authorising the stream)."""
    groups = holder.access_groups if holder is not None else [user_group(user.pk)]
    return AccessWatch(*groups)


async def disconnected(receive: Receive) -> None:
    """Returns once the client has gone away."""
    while (await receive())["type"] != "http.disconnect":
        pass


class Response:
    """One HTTP response, sent once as JSON or as an event stream (`data:` lines)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False
        self.ended = False

    async def start(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        self.started = True
        raw = [(b"content-type", content_type.encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await self.send({"type": "http.response.start", "status": status, "headers": raw})

    async def json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        await self.start(status, "application/json", headers or {})
        await self.end(json.dumps(body).encode())

    async def error(self, error: HttpError) -> None:
        await self.json(error.status, error.body, error.headers)

    async def write(self, body: bytes) -> None:
        await self.send({"type": "http.response.body", "body": body, "more_body": True})

    async def event(self, data: Any) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        await self.write(f"data: {text}\n\n".encode())

    async def end(self, body: bytes = b"") -> None:
        self.ended = True
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


def mount(prefix: str, door: ASGIApp, app: ASGIApp) -> ASGIApp:
    """HTTP requests under `prefix` (and `prefix` without its slash) to `door`, the rest to
    `app`."""

    async def http(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] + "/").startswith(prefix):
            await door(scope, receive, send)
        else:
            await app(scope, receive, send)

    return http
