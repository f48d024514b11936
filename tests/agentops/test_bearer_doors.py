"""Every door that takes a personal API key reads `Authorization: Bearer <key>` the same way
(agentops.auth.bearer_token, then api_key_user), on the real ASGI server: the JSON API, the
Prometheus endpoint, /v1/, /mcp/, the WebSocket streams and the event streams (SSE) accept
and refuse the same header variants. Before one owner, metrics refused `bearer <key>`, the API
refused a key after two spaces, and a `Basic` header (a proxy's login in front of the site)
closed the WebSocket and the SSE stream of a signed-in browser."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from django.test import Client
from websockets.asyncio.client import connect

from agentops.auth import api_key_create
from agentops.people.services import user_active_set
from tests.factories import SessionFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT = 20
HTTP_DOORS = ("api", "metrics", "v1", "mcp", "sse")
COOKIE_DOORS = ("api", "sse", "ws")  # the doors that also take the login session
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


def http_door(web: str, door: str, session_id: str, headers: dict[str, str]) -> httpx.Response:
    """The response's status and headers (an event stream is closed once its head is read)."""
    base = f"http://{web}"
    if door == "mcp":
        accept = {"Accept": "application/json, text/event-stream"}
        return httpx.post(
            f"{base}/mcp/", json=INITIALIZE, headers={**accept, **headers}, timeout=TIMEOUT
        )
    path = {
        "api": "/api/handoffs",
        "metrics": "/metrics",
        "v1": "/v1/models",
        "sse": f"/api/sessions/{session_id}/events",
    }[door]
    with httpx.stream("GET", base + path, headers=headers, timeout=TIMEOUT) as response:
        return response


def ws_door(web: str, session_id: str, headers: dict[str, str]) -> int:
    """200 when the stream's snapshot arrives; the refusal's status or close code otherwise."""

    async def main() -> int:
        try:
            async with connect(
                f"ws://{web}/ws/sessions/{session_id}/",
                additional_headers=headers,
                origin=f"http://{web}",
            ) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                return 200 if first["kind"] == "snapshot" else 0
        except Exception as refused:  # InvalidStatus (handshake) or ConnectionClosed (code)
            response = getattr(refused, "response", None)
            if response is not None:
                return int(response.status_code)
            received = getattr(refused, "rcvd", None)
            return int(received.code) if received is not None else -1

    return asyncio.run(main())


def verdicts(web: str, session_id: str, headers: dict[str, str]) -> dict[str, bool]:
    """Door → accepted? A refusal at an HTTP door is a 401 with a Bearer challenge."""
    seen = {}
    for door in HTTP_DOORS:
        response = http_door(web, door, session_id, headers)
        seen[door] = response.status_code == 200
        if not seen[door]:
            assert response.status_code == 401, (door, headers, response.status_code)
            challenge = response.headers.get("www-authenticate", "")
            assert challenge.lower().startswith("bearer"), (door, headers)
    seen["ws"] = ws_door(web, session_id, headers) == 200
    return seen


def test_every_door_reads_the_bearer_header_the_same_way(web):
    operator = UserFactory(username="keyholder", role="operator")
    key = api_key_create(user=operator, name="k")[1]
    gone = UserFactory(username="gone", role="operator")
    gone_key = api_key_create(user=gone, name="k")[1]
    user_active_set(user=gone, active=False, actor=None)
    session_id = str(SessionFactory().pk)

    variants = {
        f"Bearer {key}": True,
        f"bearer {key}": True,  # the scheme is case-insensitive (metrics refused it)
        f"BEARER   {key}": True,  # more than one space (the API refused it)
        f"Bearer {key}x": False,
        f"Bearer {gone_key}": False,  # a deactivated account's key
        "Bearer": False,  # naming no key
        "Basic a2V5aG9sZGVyOnB3": False,
        f"Token {key}": False,
        None: False,
    }
    doors = (*HTTP_DOORS, "ws")
    for header, accepted in variants.items():
        headers = {} if header is None else {"Authorization": header}
        assert verdicts(web, session_id, headers) == dict.fromkeys(doors, accepted), header


def test_a_header_of_another_scheme_leaves_the_login_session_to_decide(web):
    """A proxy's Basic login in front of the site comes with every browser request: the doors
    that take the login cookie serve the signed-in browser as if it were not there."""
    viewer = UserFactory(username="browser", role="viewer")
    client = Client()
    client.force_login(viewer)
    cookie = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
    session_id = str(SessionFactory().pk)
    for header in ("Basic YnJvd3Nlcjpwdw==", "Bearer"):
        headers = {**cookie, "Authorization": header}
        seen = verdicts(web, session_id, headers)
        assert {door: seen[door] for door in COOKIE_DOORS} == dict.fromkeys(COOKIE_DOORS, True)
