"""The NUL guard in front of every door reads the scope as the ASGI spec allows it to be:
`raw_path` may be absent or None (the path is then checked from `path`)."""

import asyncio
import json

import pytest

from agentops.request_guard import RequestGuard


def call(scope: dict) -> list[dict]:
    sent: list[dict] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"through"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(RequestGuard(app)({"type": "http", **scope}, receive, send))
    return sent


@pytest.mark.parametrize("raw_path", ["absent", None])
def test_a_scope_without_raw_path_is_let_through(raw_path):
    scope = {"path": "/v1/models", "query_string": b""}
    if raw_path != "absent":
        scope["raw_path"] = raw_path
    assert call(scope)[0]["status"] == 200


@pytest.mark.parametrize("raw_path", ["absent", None])
def test_a_nul_in_the_path_is_refused_without_raw_path(raw_path):
    scope = {"path": "/v1/models/\x00", "query_string": b""}
    if raw_path != "absent":
        scope["raw_path"] = raw_path
    start, body = call(scope)
    assert start["status"] == 400
    assert "NUL" in json.loads(body["body"])["error"]["message"]


def test_a_nul_in_the_query_is_refused_without_raw_path():
    start, _ = call({"path": "/widget/frame/", "query_string": b"key=%00", "raw_path": None})
    assert start["status"] == 400
