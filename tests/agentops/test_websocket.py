"""The WebSocket front door (agentops/websocket.py): the site's own origin only, and a
refusal (never a crash) for a path no consumer serves."""

from __future__ import annotations

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agentops.asgi import application
from agentops.models import Run
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cookie(charlie) -> str:
    client = Client()
    client.force_login(charlie)
    return client.cookies["sessionid"].value


@pytest.fixture
def paths(db) -> list[str]:
    session = SessionFactory()
    run = Run.objects.create(session=session, agent=session.agent)
    return [f"/ws/sessions/{session.pk}/", f"/ws/runs/{run.pk}/", "/ws/ops/"]


def connects(path: str, cookie: str, origin: str | None, host: str = "127.0.0.1", **extra) -> bool:
    headers = [(b"host", host.encode()), (b"cookie", f"sessionid={cookie}".encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    headers += [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]

    async def scenario() -> bool:
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        await communicator.disconnect()
        return connected

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("host", "origin", "accepted"),
    [
        ("127.0.0.1", "http://127.0.0.1", True),
        ("127.0.0.1", "http://127.0.0.1:80", True),
        ("127.0.0.1", "http://127.0.0.1:9999", False),  # another port of the same host
        ("127.0.0.1", "https://127.0.0.1", False),  # another scheme
        ("127.0.0.1:8000", "http://127.0.0.1:8000", True),
        ("127.0.0.1:8000", "http://127.0.0.1", False),
        ("127.0.0.1:8000", "http://localhost:8000", False),  # another allowed host
        ("evil.example", "http://evil.example", False),  # a Host not in ALLOWED_HOSTS
        ("127.0.0.1", "null", False),
        ("127.0.0.1", "", False),
        ("127.0.0.1", None, False),
    ],
)
def test_it_accepts_only_the_sites_own_origin(paths, cookie, host, origin, accepted):
    for path in paths:
        assert connects(path, cookie, origin, host) is accepted, path


def test_it_accepts_the_trusted_origins_of_a_proxy(paths, cookie, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://ops.example.com", "https://*.corp.example"]
    for path in paths:
        assert connects(path, cookie, "https://ops.example.com", "127.0.0.1:8000")
        assert connects(path, cookie, "https://agents.corp.example", "127.0.0.1:8000")
        assert not connects(path, cookie, "http://ops.example.com", "127.0.0.1:8000")
        assert not connects(path, cookie, "https://ops.example.com:8443", "127.0.0.1:8000")


def test_it_takes_the_scheme_from_the_proxy_header_when_configured(paths, cookie, settings):
    path = paths[0]
    forwarded = {"x_forwarded_proto": "https"}
    assert not connects(path, cookie, "https://127.0.0.1", **forwarded)  # header not trusted
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert connects(path, cookie, "https://127.0.0.1", **forwarded)
    assert not connects(path, cookie, "http://127.0.0.1", **forwarded)
    assert connects(path, cookie, "http://127.0.0.1", x_forwarded_proto="http")


def test_it_refuses_a_path_no_consumer_serves(cookie):
    for path in ("/ws/sessions/not-a-uuid/", "/ws/runs/42/", "/ws/nothing/"):
        assert not connects(path, cookie, "http://127.0.0.1")


def test_it_answers_an_unknown_stream_with_403_on_the_real_server(web, cookie):
    async def main() -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"ws://{web}/ws/sessions/not-a-uuid/",
                additional_headers={"Cookie": f"sessionid={cookie}"},
                origin=f"http://{web}",
            ):
                pass
        return refused.value.response.status_code

    assert asyncio.run(main()) == 403
