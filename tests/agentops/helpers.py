from __future__ import annotations

from typing import Any

from channels.testing import WebsocketCommunicator

from agentops.asgi import application


def user_communicator(
    path: str, user: Any, origin: bytes = b"http://127.0.0.1"
) -> WebsocketCommunicator:
    """A test client for the real ASGI application, signed in as `user` (the origin check runs)."""
    communicator = WebsocketCommunicator(
        application, path, headers=[(b"origin", origin), (b"host", b"127.0.0.1")]
    )
    communicator.scope["user"] = user
    return communicator


async def refusal_code(communicator: WebsocketCommunicator) -> int:
    """The code a refused stream closes with: accepted first, so a browser sees the code."""
    connected, _ = await communicator.connect()
    assert connected
    closed = await communicator.receive_output(timeout=5)
    await communicator.wait()
    assert closed["type"] == "websocket.close"
    return closed["code"]
