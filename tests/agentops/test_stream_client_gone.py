"""A stream whose client went away (a closed tab) is normal: the writer stops, and the line
it logs is at info without a traceback, never an error."""

from __future__ import annotations

import asyncio
import io
import logging
from contextlib import suppress

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from uvicorn.protocols.utils import ClientDisconnected

from agentops.models import Message, Role
from agentops.runtime.checkpoint import messages_append
from tests.agentops.observe.conftest import receive_until, run_async, session_cookie
from tests.factories import SessionFactory
from tests.kit import until_async
from tracing.platform.live import wait_sent

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_stream_whose_client_went_away_stops_quietly(alice):
    from agentops.asgi import application

    session = SessionFactory()
    cookie = session_cookie(alice)
    gone = asyncio.Event()

    async def server(scope, receive, send):  # type: ignore[no-untyped-def]
        """The ASGI server's side: once the client has gone, uvicorn's send raises this."""

        async def send_to_client(message):  # type: ignore[no-untyped-def]
            if gone.is_set() and message["type"] != "websocket.close":
                raise ClientDisconnected()
            await send(message)

        await application(scope, receive, send_to_client)

    def logged() -> str:
        return "".join(line for line in sink.getvalue().splitlines(True) if "live." in line)

    async def scenario() -> None:
        headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
        stream = WebsocketCommunicator(server, f"/ws/sessions/{session.pk}/", headers=headers)
        assert (await stream.connect(timeout=5))[0]
        await receive_until(stream, lambda ms: any(m.get("kind") == "snapshot" for m in ms))
        gone.set()
        await sync_to_async(messages_append)(
            session_id=session.pk, messages=[Message(role=Role.USER, content="anyone?")]
        )
        await sync_to_async(wait_sent)()
        with suppress(AssertionError):  # at most 10 s; the assertions after say what was logged
            await until_async(logged, seconds=10)
        await stream.disconnect()

    console = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    assert isinstance(console, logging.StreamHandler)
    sink = io.StringIO()
    previous = console.setStream(sink)
    try:
        run_async(scenario)
    finally:
        console.setStream(previous)
    assert "[info     ] live.client_gone" in logged(), sink.getvalue()
    assert "Traceback" not in sink.getvalue() and "[error" not in sink.getvalue(), sink.getvalue()
