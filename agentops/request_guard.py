"""The outermost HTTP layer (asgi.py): a URL that holds a NUL character is refused before any
door sees it.

Postgres stores no NUL, in text or as a query parameter: a `%00` in a path or query string
that reaches a lookup (`?key=%00`, `/v1/models/%00`) fails in the database driver, which
every door used to answer 500 or 503 "database busy". One check here covers Django's pages
and API and the ASGI apps in front of Django (`/v1/`, `/mcp/`, the event streams) alike."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_NUL_IN_QUERY = re.compile(rb"%00|\x00")


def url_problem(scope: Scope) -> tuple[str, str] | None:
    """(the part of the URL, what is wrong with it), or None."""
    # The ASGI spec lets a server leave raw_path out or set it to None.
    raw_path = scope.get("raw_path") or b""
    if "\x00" in (scope.get("path") or "") or b"%00" in raw_path or b"\x00" in raw_path:
        return "path", "the URL path must not contain NUL characters (%00)"
    if _NUL_IN_QUERY.search(scope.get("query_string") or b""):
        return "query", "the query string must not contain NUL characters (%00)"
    return None


def error_body(path: str, field: str, message: str) -> dict[str, Any]:
    if path.startswith("/v1/") or path == "/v1":  # the OpenAI-shaped error its clients read
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": field,
                "code": None,
            }
        }
    return {"error": f"{field}: {message}", "field": field}


class RequestGuard:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (problem := url_problem(scope)):
            field, message = problem
            path = scope.get("path", "")
            body = json.dumps(error_body(path, field, message)).encode()
            # The JSON API answers invalid input 422, the status each of its operations declares.
            status = 422 if path.startswith("/api/") else 400
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
