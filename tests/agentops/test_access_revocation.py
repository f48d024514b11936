"""Role changes take effect at once: a demoted or deactivated person's open streams are closed
with the refusal code (on the real ASGI server), their event streams (SSE) end with
`access.revoked`, and their next request sees the new role."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack

import httpx
import openai
import pytest
from django.test import Client
from django.urls import reverse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agentops.auth import api_key_create
from agentops.models import Run
from agentops.people.services import user_active_set, user_role_set
from tests.agentops.operators.helpers import make_handoff
from tests.factories import SessionFactory
from tracing.platform.hub import FORBIDDEN as REFUSED
from tracing.platform.hub import SIGN_IN
from tracing.platform.live import ACCESS_REVOKED, send_now, session_group

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


def sse_after(web: str, auth: dict, change, bystander: str) -> list[tuple[str, dict]]:
    """Open the person's event streams (a session's and a run's) and a bystander's, make the
    change, and return the last event of each of the person's streams once it has ended; the
    bystander's stream must still carry an event sent after that."""
    session = SessionFactory()
    run = Run.objects.create(session=session, agent=session.agent)
    paths = [f"/api/sessions/{session.pk}/events", f"/api/runs/{run.pk}/events"]

    async def last_event(lines) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
        name, data, last = "message", "", ("", {})
        async for line in lines:
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
            elif line == "" and data:
                last, name, data = (name, json.loads(data)), "message", ""
        return last

    async def next_event(lines, name: str) -> None:  # type: ignore[no-untyped-def]
        async for line in lines:
            if line == f"event: {name}":
                return

    async def main() -> list[tuple[str, dict]]:
        timeout = httpx.Timeout(5, read=GUARD_SECONDS)
        async with httpx.AsyncClient(timeout=timeout) as client, AsyncExitStack() as stack:
            streams = [
                await stack.enter_async_context(client.stream("GET", f"http://{web}{p}", **auth))
                for p in paths
            ]
            other = await stack.enter_async_context(
                client.stream("GET", f"http://{web}{paths[0]}", cookies={"sessionid": bystander})
            )
            assert [r.status_code for r in [*streams, other]] == [200] * 3
            others = other.aiter_lines()
            await next_event(others, "state")
            await asyncio.to_thread(change)
            ends = await asyncio.wait_for(
                asyncio.gather(*(last_event(r.aiter_lines()) for r in streams)), GUARD_SECONDS
            )
            send_now(session_group(session.pk), {"kind": "still.here"})
            await asyncio.wait_for(next_event(others, "still.here"), GUARD_SECONDS)
            return list(ends)

    return asyncio.run(main())


def key_or_login(user, how: str) -> dict:  # type: ignore[no-untyped-def]
    if how == "key":
        return {"headers": {"Authorization": f"Bearer {api_key_create(user=user, name='k')[1]}"}}
    return {"cookies": {"sessionid": logged_in(user).cookies["sessionid"].value}}


def reopens(web: str, auth: dict) -> int:
    """The status a new event stream of the person gets."""
    path = f"/api/sessions/{SessionFactory().pk}/events"
    with httpx.stream("GET", f"http://{web}{path}", timeout=10, **auth) as response:
        return response.status_code


@pytest.mark.parametrize("how", ["key", "login"])
def test_it_ends_a_deactivated_persons_event_streams(web, how, alice, bob, charlie):
    auth = key_or_login(bob, how)
    ends = sse_after(
        web,
        auth,
        lambda: user_active_set(user=bob, active=False, actor=alice),
        logged_in(charlie).cookies["sessionid"].value,
    )
    assert [name for name, _ in ends] == [ACCESS_REVOKED] * 2
    assert reopens(web, auth) == 401


@pytest.mark.parametrize(("how", "role", "status"), [("key", "viewer", 200), ("login", "", 403)])
def test_it_ends_a_demoted_persons_event_streams(web, how, role, status, alice, bob, charlie):
    auth = key_or_login(bob, how)
    ends = sse_after(
        web,
        auth,
        lambda: user_role_set(user=bob, role=role, actor=alice),
        logged_in(charlie).cookies["sessionid"].value,
    )
    assert [name for name, _ in ends] == [ACCESS_REVOKED] * 2
    assert reopens(web, auth) == status  # authorised again: a viewer reads, no role does not


def test_it_ends_a_deactivated_persons_v1_stream(
    web, worker, dev_agent, devmodel, model_name, alice, bob
):
    """`/v1/` answers stream for as long as a run lasts (minutes): a revocation ends them too,
    with an OpenAI-shaped error event the official client raises."""
    key = api_key_create(user=bob, name="v1")[1]
    devmodel.script(model_name, [{"stream_delay": 0.5}])  # a word every half second

    async def main() -> openai.APIError:
        client = openai.AsyncOpenAI(
            base_url=f"http://{web}/v1", api_key=key, max_retries=0, timeout=60
        )
        stream = await client.chat.completions.create(
            model=dev_agent.slug,
            messages=[{"role": "user", "content": " ".join(["word"] * 80)}],
            stream=True,
        )

        async def read() -> None:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    await asyncio.to_thread(user_active_set, user=bob, active=False, actor=alice)

        with pytest.raises(openai.APIError) as raised:
            await asyncio.wait_for(read(), GUARD_SECONDS)
        return raised.value

    error = asyncio.run(main())
    assert isinstance(error.body, dict) and error.body["code"] == "access_revoked"


@pytest.mark.parametrize("change", ["deactivate", "demote"])
def test_a_v1_message_is_refused_when_access_went_before_the_watch_joined(
    worker, dev_agent, alice, bob, change
):
    """A revocation after the key was read but before the completion joined its AccessWatch
    (its event sent while nobody listened) still stops the message: the access is checked
    again once joined. The key's user is read before the change, as the door read it."""
    from agentops.auth import has_role
    from agentops.mcp_server.app import AgentCall
    from agentops.models import Message
    from agentops.openai_compat.app import ApiError
    from agentops.openai_compat.services import chat_session_resolve

    key_user = type(bob).objects.get(pk=bob.pk)
    assert has_role(key_user, "operator")
    session, _ = chat_session_resolve(agent=dev_agent, user=key_user, session_id="", end_user="")
    if change == "deactivate":
        user_active_set(user=bob, active=False, actor=alice)
    else:
        user_role_set(user=bob, role="viewer", actor=alice)
    call = AgentCall()
    call.model = dev_agent.slug
    with pytest.raises(ApiError) as raised:
        asyncio.run(asyncio.wait_for(call.converse(session, key_user, "hello"), GUARD_SECONDS))
    assert raised.value.status == 403 and raised.value.code == "access_revoked"
    assert not Message.objects.filter(session=session).exists()


# -- Every kind of stream ends the same way when what opened it is revoked ---------------------
# A personal API key opens the console's WebSockets, the event streams, `/v1/` and `/mcp/`; a
# widget key opens the widget's chats. Deleting the one, disabling the other, ends each stream
# at once with its door's refusal: 4403, `access.revoked`, 403 `access_revoked`.
STREAM_KINDS = ["console_ws", "sse", "v1", "mcp", "widget"]


async def _ended_console_ws(web: str, key: str, session_id: str, revoke) -> str:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"}
    async with connect(f"ws://{web}/ws/sessions/{session_id}/", additional_headers=headers) as ws:
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), GUARD_SECONDS))
        assert snapshot["kind"] == "snapshot"
        await asyncio.to_thread(revoke)
        return f"closed {await asyncio.wait_for(close_code(ws), GUARD_SECONDS)}"


async def _ended_sse(web: str, key: str, session_id: str, revoke) -> str:  # type: ignore[no-untyped-def]
    timeout = httpx.Timeout(5, read=GUARD_SECONDS)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=timeout) as client:
        path = f"http://{web}/api/sessions/{session_id}/events"
        async with client.stream("GET", path, headers=headers) as response:
            assert response.status_code == 200
            name, last = "", ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line == "" and name:
                    last = name
                    if name == "state":
                        await asyncio.to_thread(revoke)
            return f"event {last}"


async def _ended_v1(web: str, key: str, agent_slug: str, revoke) -> str:  # type: ignore[no-untyped-def]
    client = openai.AsyncOpenAI(base_url=f"http://{web}/v1", api_key=key, max_retries=0, timeout=60)
    stream = await client.chat.completions.create(
        model=agent_slug,
        messages=[{"role": "user", "content": " ".join(["word"] * 80)}],
        stream=True,
    )
    try:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                await asyncio.to_thread(revoke)
    except openai.APIError as error:
        assert isinstance(error.body, dict)
        return f"error {error.body['code']}"
    return "not ended"


async def _ended_mcp(web: str, key: str, agent_slug: str, revoke) -> str:  # type: ignore[no-untyped-def]
    import httpx2
    from asgiref.sync import sync_to_async
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    from agentops.models import RunStatus
    from tests.kit import until_async

    running = Run.objects.filter(agent__slug=agent_slug, status=RunStatus.RUNNING)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        async with streamable_http_client(f"http://{web}/mcp/", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                call = asyncio.ensure_future(
                    session.call_tool(agent_slug, {"message": " ".join(["word"] * 80)})
                )
                await until_async(sync_to_async(running.exists), seconds=GUARD_SECONDS)
                await asyncio.to_thread(revoke)
                result = await asyncio.wait_for(call, GUARD_SECONDS)
    text = " ".join(getattr(part, "text", "") for part in result.content)
    assert result.is_error, text
    return "error access_revoked" if text.startswith("access revoked") else f"error {text}"


async def _ended_widget(web: str, token: str, session_id: str, revoke) -> str:  # type: ignore[no-untyped-def]
    async with connect(f"ws://{web}/ws/widget/", origin=f"http://{web}") as ws:
        await ws.send(json.dumps({"kind": "hello", "token": token, "session": session_id}))
        state = json.loads(await asyncio.wait_for(ws.recv(), GUARD_SECONDS))
        assert state["kind"] == "state" and state["session_id"] == session_id
        await asyncio.to_thread(revoke)
        return f"closed {await asyncio.wait_for(close_code(ws), GUARD_SECONDS)}"


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_revoking_the_key_ends_every_kind_of_stream_it_opened(
    kind, web, worker, dev_agent, devmodel, model_name, alice, bob
):
    """Deleting an API key (or disabling a widget key) ends what it opened, whatever the kind,
    and nothing else: another key of the same person keeps its stream."""
    from agentops.auth import api_key_delete
    from agentops.widget.services import (
        enduser_session_open,
        enduser_token_issue,
        widget_key_set_enabled,
    )
    from tests.agentops.widget.helpers import enduser, make_key

    devmodel.script(model_name, [{"stream_delay": 0.5}])  # a word every half second
    row, key = api_key_create(user=bob, name="revoked")
    other_key = api_key_create(user=bob, name="kept")[1]
    session = SessionFactory(agent=dev_agent)
    revoke = lambda: api_key_delete(user=bob, key_id=row.pk)  # noqa: E731

    async def main() -> tuple[str, dict]:
        headers = {"Authorization": f"Bearer {other_key}"}
        async with connect(f"ws://{web}/ws/ops/", additional_headers=headers) as kept:
            if kind == "widget":
                widget_key, _ = await asyncio.to_thread(make_key, agent=dev_agent)
                chat = await asyncio.to_thread(
                    enduser_session_open,
                    key=widget_key,
                    enduser=enduser(widget_key),
                    address="127.0.0.1",
                )
                token = enduser_token_issue(key=widget_key, identity="visitor:me")
                ended = await _ended_widget(
                    web,
                    token,
                    str(chat.pk),
                    lambda: widget_key_set_enabled(key=widget_key, enabled=False, actor=alice),
                )
            elif kind in ("v1", "mcp"):
                opened = _ended_v1 if kind == "v1" else _ended_mcp
                ended = await opened(web, key, dev_agent.slug, revoke)
            else:
                opened = _ended_console_ws if kind == "console_ws" else _ended_sse
                ended = await opened(web, key, str(session.pk), revoke)
            await kept.send(json.dumps({"kind": "ping"}))
            while (reply := json.loads(await asyncio.wait_for(kept.recv(), GUARD_SECONDS)))[
                "kind"
            ] != "pong":  # the ops stream carries the runs' events too
                pass
            return ended, reply

    ended, reply = asyncio.run(main())
    assert (
        ended
        == {
            "console_ws": f"closed {REFUSED}",
            "widget": f"closed {REFUSED}",
            "sse": f"event {ACCESS_REVOKED}",
            "v1": "error access_revoked",
            "mcp": "error access_revoked",
        }[kind]
    )
    assert reply == {"kind": "pong"}  # the person's other key is untouched
    if kind != "widget":  # the deleted key opens nothing more
        response = httpx.get(
            f"http://{web}/api/sessions/{session.pk}/events",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert response.status_code == 401


@pytest.mark.parametrize("how", ["admin", "person deleted"])
def test_a_key_deleted_outside_the_account_page_ends_its_streams_too(web, dev_agent, bob, how):
    """The admin deletes a key row by row; deleting its person cascades to it. Neither goes
    through auth.api_key_delete, and its streams must end all the same."""
    from agentops.models import ApiKey

    row, key = api_key_create(user=bob, name="elsewhere")
    session = SessionFactory(agent=dev_agent)

    def revoke() -> None:
        if how == "admin":
            ApiKey.objects.filter(pk=row.pk).delete()
        else:
            bob.delete()

    ended = asyncio.run(_ended_sse(web, key, str(session.pk), revoke))
    assert ended == f"event {ACCESS_REVOKED}"
