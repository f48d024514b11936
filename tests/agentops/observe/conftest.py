from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.db import connections
from django.test import Client

from tests.factories import SessionFactory


def run_async(main: Callable[[], Awaitable[Any]]) -> Any:
    """asyncio.run(main()), closing the DB connections async code opened in its worker thread."""

    async def wrapper() -> Any:
        try:
            return await main()
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(wrapper())


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def communicator(
    path: str, cookie: str = "", origin: str = "http://127.0.0.1"
) -> WebsocketCommunicator:
    """A test client for the real ASGI application (auth and origin check included)."""
    from agentops.asgi import application

    headers = [(b"host", b"127.0.0.1"), (b"origin", origin.encode())]
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def receive_until(comm: WebsocketCommunicator, done, timeout: float = 10.0) -> list[dict]:
    """Messages until `done(messages)` is true."""
    messages: list[dict] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done(messages):
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"timed out; got {messages!r}"[:3000])
        messages.append(await comm.receive_json_from(timeout=remaining))
    return messages


async def joined(comm: WebsocketCommunicator, timeout: float = 10.0) -> None:
    """Wait until the stream listens to its group: a consumer handles one message at a time,
    so the answer to a ping comes only after `connect` (which joins the group) has returned."""
    await comm.send_json_to({"kind": "ping"})
    pongs = await receive_until(comm, lambda ms: ms and ms[-1]["kind"] == "pong", timeout)
    assert [m["kind"] for m in pongs] == ["pong"], pongs


def span_seqs(messages: list[dict]) -> list[int]:
    return [s["seq"] for m in messages if m.get("kind") == "spans" for s in m["spans"]]


@pytest.fixture
def run(transactional_db):  # type: ignore[no-untyped-def]
    from agentops.models import Run

    session = SessionFactory()
    return Run.objects.create(session=session, agent=session.agent)
