"""Role changes take effect at once: a demoted or deactivated person's open streams are closed
with the refusal code (on the real ASGI server), and their next request sees the new role."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.test import Client
from django.urls import reverse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agentops.models import Run
from agentops.services import user_active_set, user_role_set
from tests.agentops.operators.helpers import make_handoff
from tests.factories import SessionFactory
from tracing.consumers import FORBIDDEN as REFUSED
from tracing.consumers import SIGN_IN

pytestmark = pytest.mark.django_db(transaction=True)
GUARD_SECONDS = 20  # a hang fails the test instead of blocking the suite


def logged_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def paths(db) -> list[str]:
    session = SessionFactory()
    run = Run.objects.create(session=session, agent=session.agent)
    return ["/ws/ops/", f"/ws/sessions/{session.pk}/", f"/ws/runs/{run.pk}/"]


async def close_code(ws) -> int:  # type: ignore[no-untyped-def]
    """Read until the server closes the socket; its close code."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        return closed.rcvd.code


def open_streams_then(web: str, cookie: str, paths: list[str], change, bystander: str):  # type: ignore[no-untyped-def]
    """Open the person's streams and a bystander's ops stream, make the change, and return
    the person's close codes and whether the bystander's stream still answers."""

    async def main() -> tuple[list[int], dict]:
        origin = f"http://{web}"
        sockets = [
            await connect(
                f"ws://{web}{p}",
                additional_headers={"Cookie": f"sessionid={cookie}"},
                origin=origin,
            )
            for p in paths
        ]
        other = await connect(
            f"ws://{web}/ws/ops/",
            additional_headers={"Cookie": f"sessionid={bystander}"},
            origin=origin,
        )
        try:
            await asyncio.to_thread(change)
            codes = await asyncio.wait_for(
                asyncio.gather(*(close_code(ws) for ws in sockets)), GUARD_SECONDS
            )
            await other.send(json.dumps({"kind": "ping"}))
            reply = json.loads(await asyncio.wait_for(other.recv(), GUARD_SECONDS))
            return list(codes), reply
        finally:
            for ws in [*sockets, other]:
                await ws.close()

    return asyncio.run(main())


def reconnects(web: str, cookie: str, path: str) -> bool:
    """Whether the stream takes the person: a refused one is accepted, then closed with its
    code (SIGN_IN for a deactivated person, whose login session is gone)."""

    async def main() -> bool:
        async with connect(
            f"ws://{web}{path}",
            additional_headers={"Cookie": f"sessionid={cookie}"},
            origin=f"http://{web}",
        ) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                return True  # still open, nothing to say yet
            except ConnectionClosed as closed:
                return closed.rcvd is None or closed.rcvd.code not in (SIGN_IN, REFUSED)
            return True

    return asyncio.run(main())


def test_it_closes_a_demoted_operators_streams_at_once(web, paths, alice, bob, charlie):
    bobs = logged_in(bob)
    handoff = make_handoff()
    codes, reply = open_streams_then(
        web,
        bobs.cookies["sessionid"].value,
        paths,
        lambda: user_role_set(user=bob, role="viewer", actor=alice),
        logged_in(charlie).cookies["sessionid"].value,
    )
    assert codes == [REFUSED] * len(paths)
    assert reply == {"kind": "pong"}  # another person's stream is untouched
    # The next request and the next stream see the new role: a viewer reads, never claims.
    assert bobs.post(reverse("operators:claim", args=[handoff.pk])).status_code == 403
    assert bobs.get(reverse("operators:queue")).status_code == 200
    assert reconnects(web, bobs.cookies["sessionid"].value, "/ws/ops/")


def test_it_closes_a_deactivated_persons_streams_and_refuses_them_after(
    web, paths, alice, bob, charlie
):
    cookie = logged_in(bob).cookies["sessionid"].value
    codes, _ = open_streams_then(
        web,
        cookie,
        paths,
        lambda: user_active_set(user=bob, active=False, actor=alice),
        logged_in(charlie).cookies["sessionid"].value,
    )
    assert codes == [REFUSED] * len(paths)
    assert not reconnects(web, cookie, "/ws/ops/")
