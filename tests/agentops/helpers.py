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
