"""Reconnecting with the last seq seen resumes every kind of stream with nothing lost and
nothing twice (tracing.platform.hub `SeqCursor`), on the real ASGI server: the API's event
streams (`Last-Event-ID`), the widget (`after` in its hello) and the trace WebSocket
(`?after=`). Items are stored before the stream opens, while it is open, and while it is
closed; the client sees each seq once, in order."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from agentops.auth import api_key_create
from agentops.models import Message, Role, Run, Session
from agentops.runtime.checkpoint import messages_append
from agentops.widget.services import enduser_session_open, enduser_token_issue
from tests.agentops.widget.helpers import enduser, make_key
from tracing.emit import Tracer
from tracing.platform.live import wait_sent

pytestmark = pytest.mark.django_db(transaction=True)
GUARD_SECONDS = 20
KINDS = ["sse_session", "sse_run", "widget", "ws_run"]

Seqs = AsyncIterator[int]
Opener = Callable[[int], AbstractAsyncContextManager[Seqs]]


def sse_seqs(response: httpx.Response, event: str, seq_of: Callable[[dict], int]) -> Seqs:
    async def seqs() -> Seqs:
        name, data = "", ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
            elif line == "":
                if name == event and data:
                    yield seq_of(json.loads(data))
                name, data = "", ""

    return seqs()


def openers(web: str, key: str, session: Session, run: Run, token: str) -> dict[str, Opener]:
    bearer = {"Authorization": f"Bearer {key}"}

    def sse(path: str, event: str, seq_of: Callable[[dict], int]) -> Opener:
        @asynccontextmanager
        async def open_(after: int) -> AsyncIterator[Seqs]:
            timeout = httpx.Timeout(5, read=GUARD_SECONDS)
            headers = {**bearer, "Last-Event-ID": str(after)}
            async with (
                httpx.AsyncClient(timeout=timeout) as client,
                client.stream("GET", f"http://{web}{path}", headers=headers) as response,
            ):
                assert response.status_code == 200
                yield sse_seqs(response, event, seq_of)

        return open_

    @asynccontextmanager
    async def widget(after: int) -> AsyncIterator[Seqs]:
        async with connect(f"ws://{web}/ws/widget/", origin=f"http://{web}") as ws:
            hello = {"kind": "hello", "token": token, "session": str(session.pk), "after": after}
            await ws.send(json.dumps(hello))

            async def seqs() -> Seqs:
                async for frame in ws:
                    message = json.loads(frame)
                    if message["kind"] == "message":
                        yield message["seq"]

            yield seqs()

    @asynccontextmanager
    async def ws_run(after: int) -> AsyncIterator[Seqs]:
        url = f"ws://{web}/ws/runs/{run.pk}/?after={after}"
        async with connect(url, additional_headers=bearer) as ws:

            async def seqs() -> Seqs:
                async for frame in ws:
                    message = json.loads(frame)
                    if message["kind"] == "spans":
                        for span in message["spans"]:
                            yield span["seq"]

            yield seqs()

    return {
        "sse_session": sse(
            f"/api/sessions/{session.pk}/events", "message", lambda d: d["message"]["seq"]
        ),
        "sse_run": sse(f"/api/runs/{run.pk}/events", "span", lambda d: d["seq"]),
        "widget": widget,
        "ws_run": ws_run,
    }


async def take(seqs: Seqs, count: int) -> list[int]:
    async def read() -> list[int]:
        got: list[int] = []
        async for seq in seqs:
            got.append(seq)
            if len(got) == count:
                break
        return got

    return await asyncio.wait_for(read(), GUARD_SECONDS)


@pytest.mark.parametrize("kind", KINDS)
def test_a_reconnect_with_the_last_seq_resumes_without_loss_or_duplicate(web, charlie, kind):
    key = api_key_create(user=charlie, name="viewer")[1]
    widget_key, _ = make_key()
    session = enduser_session_open(key=widget_key, enduser=enduser(widget_key), address="127.0.0.1")
    token = enduser_token_issue(key=widget_key, identity="visitor:me")
    run = Run.objects.create(session=session, agent=session.agent)
    tracer = Tracer(run.pk, session_id=session.pk, agent=session.agent.slug)
    written = 0

    def store(count: int) -> None:
        """`count` more items of the stream's kind: the session's messages, or the run's spans."""
        nonlocal written
        for _ in range(count):
            written += 1
            if kind in ("sse_session", "widget"):
                messages_append(
                    session_id=session.pk,
                    messages=[Message(role=Role.USER, content=f"item {written}")],
                )
            else:
                with tracer.span("tool.call", index=written):
                    pass
                tracer.flush_now()
        wait_sent()

    opened = openers(web, key, session, run, token)[kind]

    async def main() -> list[int]:
        await asyncio.to_thread(store, 3)  # before the stream opens
        async with opened(0) as seqs:
            seen = await take(seqs, 3)
            await asyncio.to_thread(store, 2)  # live
            seen += await take(seqs, 2)
        await asyncio.to_thread(store, 2)  # while nobody listens
        async with opened(seen[-1]) as seqs:
            seen += await take(seqs, 2)
            await asyncio.to_thread(store, 2)  # live again
            seen += await take(seqs, 2)
        # Reconnecting while items keep coming: some are both read from Postgres and
        # received live (the stream joins before it reads); each must arrive once.
        steady = asyncio.ensure_future(asyncio.to_thread(store_steadily, 20))
        async with opened(seen[-1]) as seqs:
            seen += await take(seqs, 20)
            await steady
            await asyncio.to_thread(store, 1)  # one more: nothing was sent twice before it
            seen += await take(seqs, 1)
        return seen

    def store_steadily(count: int) -> None:
        for _ in range(count):
            store(1)
            time.sleep(0.005)  # on purpose: a steady writer across the reconnect

    seen: list[Any] = asyncio.run(main())
    assert seen == list(range(1, written + 1)) == list(range(1, 31))
