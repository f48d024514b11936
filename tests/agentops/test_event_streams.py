"""Server-Sent Events for API clients (agentops/event_streams.py) and the WebSockets with an
API key (agentops/websocket.py), against a real uvicorn, RQ worker and dev model."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from django.test import Client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agentops.auth import api_key_create
from agentops.models import RunStatus
from agentops.testing.processes import child_env, free_port, start_web
from tests.agentops.runtime.helpers import wait_for_run
from tests.factories import SessionFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


class Events:
    """A parsed SSE stream: (id, event, data) as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()

    def __iter__(self) -> Iterator[tuple[int | None, str, dict]]:
        event_id, name, data = None, "message", ""
        for line in self.lines:
            if line == "":
                if data:
                    yield event_id, name, json.loads(data)
                event_id, name, data = None, "message", ""
            elif line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]

    def read_until(self, done) -> list[tuple[int | None, str, dict]]:
        """The events up to the first for which `done` is true, read as the server sends them
        (no polling: a blocking read; the stream's read timeout bounds the wait)."""
        seen = []
        for item in self:
            seen.append(item)
            if done(item):
                return seen
        raise AssertionError(f"the stream ended before the awaited event; saw {seen}")


@contextmanager
def events(web: str, path: str, key: str | None, last_event_id: int | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    timeout = httpx.Timeout(5, read=60)
    with httpx.stream("GET", f"http://{web}{path}", headers=headers, timeout=timeout) as response:
        yield response


def api(web: str, key: str, path: str, body: dict) -> dict:
    response = httpx.post(
        f"http://{web}/api{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code < 300, response.text
    return response.json()


@pytest.fixture
def keys(bob, charlie):
    return api_key_create(user=bob, name="op")[1], api_key_create(user=charlie, name="view")[1]


def message_seq(item) -> int | None:
    _, name, data = item
    return data["message"]["seq"] if name == "message" else None


def test_it_resumes_a_session_stream_with_no_gap_or_duplicate(web, worker, dev_agent, keys):
    operator, viewer = keys
    session = api(web, operator, "/sessions", {"agent": dev_agent.slug, "user": "erin"})["id"]
    path = f"/api/sessions/{session}/events"
    received: list[int] = []
    with events(web, path, viewer) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Events(response)
        (state,) = stream.read_until(lambda item: item[1] == "state")
        assert state[2]["session"]["user"] == "erin" and state[2]["run"] is None
        run = api(web, operator, f"/sessions/{session}/messages", {"content": "hello there"})["run"]
        seen = stream.read_until(
            lambda item: item[1] == "run.status" and item[2]["status"] == "succeeded"
        )
    kinds = {name for _, name, _ in seen}
    assert {"message", "token", "run.status"} <= kinds
    for event_id, name, data in seen:
        if name == "message":
            assert event_id == data["message"]["seq"]  # the stored sequence is the event id
            received.append(event_id)
        else:
            assert event_id is None  # not stored: no id to resume from
    assert "".join(d["text"] for _, n, d in seen if n == "token") == "You said: hello there"
    assert wait_for_run(run).status == RunStatus.SUCCEEDED

    # Disconnected: the end user writes again; the answer comes while nobody listens.
    run = api(web, operator, f"/sessions/{session}/messages", {"content": "second"})["run"]
    wait_for_run(run)
    api(web, operator, f"/sessions/{session}/messages", {"content": "third"})  # in flight now
    with events(web, path, viewer, last_event_id=received[-1]) as response:
        stream = Events(response)
        # The third answer comes live, or in the replay (before the state) when its run was
        # done before the reconnect: read until both the state and the answer came.
        came: set[str] = set()

        def state_and_answer(item: tuple[int | None, str, dict]) -> bool:
            if item[1] == "state":
                came.add("state")
            elif item[1] == "message" and item[2]["message"]["content"] == "You said: third":
                came.add("answer")
            return came == {"state", "answer"}

        seen = stream.read_until(state_and_answer)
    received += [seq for seq in map(message_seq, seen) if seq is not None]
    assert received == list(range(1, len(received) + 1))  # every message once, in order
    assert len(received) == 6
    (state,) = [d for _, n, d in seen if n == "state"]
    assert state["last_event_id"] >= 4 and state["run"]["run_id"]


def test_it_streams_a_runs_trace_and_resumes_it(web, worker, dev_agent, keys):
    operator, viewer = keys
    session = api(web, operator, "/sessions", {"agent": dev_agent.slug})["id"]
    run = api(web, operator, f"/sessions/{session}/messages", {"content": "hi"})["run"]
    with events(web, f"/api/runs/{run}/events", viewer) as response:
        first = Events(response).read_until(lambda item: item[1] == "end")
    wait_for_run(run)
    trace = httpx.get(
        f"http://{web}/api/runs/{run}/trace", headers={"Authorization": f"Bearer {viewer}"}
    ).json()["spans"]
    spans = [(i, d) for i, n, d in first if n == "span"]
    assert [i for i, _ in spans] == [s["seq"] for s in trace]  # all of it, each once
    assert spans[-1][1]["name"] == "run.status"
    resume_from = spans[len(spans) // 2][0]
    with events(web, f"/api/runs/{run}/events", viewer, last_event_id=resume_from) as response:
        rest = Events(response).read_until(lambda item: item[1] == "end")
    assert [i for i, n, _ in rest if n == "span"] == [i for i, _ in spans if i > resume_from]


def test_it_refuses_streams_to_whom_may_not_read_them(web, keys, charlie):
    session = SessionFactory()
    nobody = api_key_create(user=UserFactory(username="norole"), name="n")[1]
    cases = [
        (None, f"/api/sessions/{session.pk}/events", 401),
        (keys[1] + "x", f"/api/sessions/{session.pk}/events", 401),
        (nobody, f"/api/sessions/{session.pk}/events", 403),
        (keys[1], "/api/sessions/00000000-0000-0000-0000-000000000000/events", 404),
        (keys[1], "/api/runs/00000000-0000-0000-0000-000000000000/events", 404),
    ]
    for key, path, status in cases:
        with events(web, path, key) as response:
            response.read()
            assert response.status_code == status, (key, path)
            assert response.json()["error"]
    with events(web, f"/api/sessions/{session.pk}/events", keys[1], last_event_id=None) as ok:
        assert ok.status_code == 200
    browser = Client()
    browser.force_login(charlie)  # the console's own login session works too
    cookies = {"sessionid": browser.cookies["sessionid"].value}
    with httpx.stream(
        "GET", f"http://{web}/api/sessions/{session.pk}/events", cookies=cookies, timeout=10
    ) as response:
        assert response.status_code == 200
        assert any(line == "event: state" for line in response.iter_lines())
    bad = httpx.get(
        f"http://{web}/api/sessions/{session.pk}/events?last_event_id=x",
        headers={"Authorization": f"Bearer {keys[1]}"},
    )
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["error"]


def test_it_holds_streams_open_without_a_thread_each(keys, db):
    session = SessionFactory()
    port = free_port()
    proc = start_web(child_env(), port)
    try:

        async def main() -> int:
            headers = {"Authorization": f"Bearer {keys[1]}"}
            async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as c:
                url = f"http://127.0.0.1:{port}/api/sessions/{session.pk}/events"
                streams = [c.stream("GET", url, headers=headers) for _ in range(40)]
                responses = [await s.__aenter__() for s in streams]
                try:
                    for response in responses:  # each has had its replay: it is being held
                        lines = response.aiter_lines()
                        while not (await anext(lines)).startswith("event: state"):
                            pass
                    return len(os.listdir(f"/proc/{proc.pid}/task"))
                finally:
                    for s in streams:
                        await s.__aexit__(None, None, None)

        threads = asyncio.run(main())
    finally:
        proc.stop()
    assert threads < 40, f"{threads} threads for 40 open streams"


def test_it_accepts_an_api_key_on_the_websockets(web, keys, db):
    session = SessionFactory()
    nobody = api_key_create(user=UserFactory(username="norole"), name="n")[1]
    url = f"ws://{web}/ws/sessions/{session.pk}/"

    async def snapshot(key: str, origin: str | None) -> dict:
        async with connect(
            url, additional_headers={"Authorization": f"Bearer {key}"}, origin=origin
        ) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    async def refused(key: str, origin: str | None = None) -> int:
        with pytest.raises(InvalidStatus) as refusal:
            await snapshot(key, origin)
        return refusal.value.response.status_code

    first = asyncio.run(snapshot(keys[1], None))  # a server: no Origin at all
    assert first["kind"] == "snapshot" and first["session"]["id"] == str(session.pk)
    # The Origin check protects the login cookie; a key is not sent by browsers on their own.
    assert asyncio.run(snapshot(keys[1], "http://elsewhere.example"))["kind"] == "snapshot"
    assert asyncio.run(refused(keys[1] + "x")) == 403
    # The same authorisation, viewer at least: accepted, then closed with the refusal's code.
    with pytest.raises(ConnectionClosed) as closed:
        asyncio.run(snapshot(nobody, None))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
