"""Runs driven through the JSON API, executed by real RQ workers against the dev model, watched
over /ws/runs/ and /ws/ops/ — through the in-process ASGI app, a real uvicorn socket, and two
web processes sharing one Postgres and Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from django.test import Client
from django.urls import reverse
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agentops.auth import api_key_create
from agentops.models import Run, RunStatus
from agentops.testing.processes import child_env, free_port, start_web, start_worker
from tests.agentops.observe.conftest import (
    communicator,
    receive_until,
    run_async,
    session_cookie,
    span_seqs,
)
from tests.agentops.runtime.helpers import wait_for_run
from tools.services import python_tools_sync
from tracing.models import Span
from tracing.rollups import rollup_metrics
from tracing.selectors import metrics_totals, span_waterfall

pytestmark = pytest.mark.django_db(transaction=True)

TOOL_MESSAGE = 'call echo {"text": "ping"}'


async def listening(socket) -> None:  # type: ignore[no-untyped-def]
    """Wait until the stream has joined its group: the server answers a ping only after it."""
    await socket.send(json.dumps({"kind": "ping"}))
    while json.loads(await asyncio.wait_for(socket.recv(), 10)).get("kind") != "pong":
        pass


def finished(messages: list[dict]) -> bool:
    """A terminal run.status event has arrived on the run stream."""
    return any(
        s["name"] == "run.status"
        and s["attributes"].get("status") in ("succeeded", "failed", "handed_off")
        for m in messages
        if m.get("kind") == "spans"
        for s in m["spans"]
    )


async def run_streamed(web: str, cookie: str, api: Api, agent) -> tuple[str, list, list[str]]:  # type: ignore[no-untyped-def]
    """Starts a run through the API while following the ops feed on `web`, then the run's own
    stream until the run ends: the run, its stream's messages and its statuses on the ops feed
    up to "succeeded"."""
    headers = {"Cookie": f"sessionid={cookie}"}
    origin = f"http://{web}"
    async with websockets.connect(
        f"ws://{web}/ws/ops/", additional_headers=headers, origin=origin
    ) as ops:
        await listening(ops)
        run_id = await asyncio.to_thread(api.start_run, agent.slug, TOOL_MESSAGE)
        async with websockets.connect(
            f"ws://{web}/ws/runs/{run_id}/", additional_headers=headers, origin=origin
        ) as ws:
            messages: list[dict] = []
            while not finished(messages):
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        statuses: list[str] = []
        while "succeeded" not in statuses:
            event = json.loads(await asyncio.wait_for(ops.recv(), 30))
            if event.get("kind") == "run.status" and event.get("run_id") == str(run_id):
                statuses.append(event["status"])
    return run_id, messages, statuses


def stored_seqs(run_id) -> list[int]:  # type: ignore[no-untyped-def]
    return list(Span.objects.filter(trace_id=run_id).order_by("seq").values_list("seq", flat=True))


class Api:
    """The JSON API as an integrating app uses it: a bearer API key over HTTP."""

    def __init__(self, user, base: str = "") -> None:
        _, self.key = api_key_create(user=user, name="e2e")
        self.base = base
        self.client = Client()

    def post(self, path: str, body: dict) -> dict:
        headers = {"Authorization": f"Bearer {self.key}"}
        if self.base:
            import httpx

            response = httpx.post(self.base + path, json=body, headers=headers, timeout=10)
            assert response.status_code in (201, 202), response.text
            return response.json()
        response = self.client.post(
            path, json.dumps(body), content_type="application/json", headers=headers
        )
        assert response.status_code in (201, 202), response.content
        return response.json()

    def start_run(self, agent: str, content: str) -> str:
        session = self.post("/api/sessions", {"agent": agent, "user": "erin"})
        return self.post(f"/api/sessions/{session['id']}/messages", {"content": content})["run"]


@pytest.fixture
def agent(dev_agent):
    dev_agent.tools.add(*python_tools_sync())
    return dev_agent


def tree(run_id) -> list[tuple[int, str, str]]:
    """(depth, name, status) depth-first; memory spans left out (they depend on stored memories)."""
    rows = span_waterfall(spans=Span.objects.filter(trace_id=run_id).order_by("seq")).rows
    return [
        (r.depth, r.span.name, r.span.status) for r in rows if not r.span.name.startswith("memory.")
    ]


EXPECTED_TREE = [
    (0, "run.status", "ok"),
    (0, "step", "ok"),
    (1, "context.assemble", "ok"),
    (1, "model.call", "ok"),
    (0, "checkpoint", "ok"),
    (0, "step", "ok"),
    (1, "tool.call", "ok"),
    (0, "checkpoint", "ok"),
    (0, "step", "ok"),
    (1, "context.assemble", "ok"),
    (1, "model.call", "ok"),
    (0, "checkpoint", "ok"),
    (0, "run.status", "ok"),
]


def test_it_traces_a_run_through_the_dev_model_and_streams_it_in_order(worker, agent, bob, charlie):
    api = Api(bob)
    cookie = session_cookie(charlie)
    run_id = api.start_run(agent.slug, TOOL_MESSAGE)

    async def watch():
        comm = communicator(f"/ws/runs/{run_id}/", cookie)
        assert (await comm.connect())[0]
        messages = await receive_until(comm, finished, timeout=60)
        await comm.disconnect()
        return messages

    messages = run_async(watch)
    run = wait_for_run(run_id)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    stored = list(Span.objects.filter(trace_id=run_id).order_by("seq"))
    received = [s for m in messages if m["kind"] == "spans" for s in m["spans"]]
    assert span_seqs(messages) == [s.seq for s in stored], "every span once, in order"
    assert [s["name"] for s in received] == [s.name for s in stored]
    assert tree(run_id) == EXPECTED_TREE
    statuses = [s.attributes.get("status") for s in stored if s.name == "run.status"]
    assert statuses == ["running", "succeeded"]
    calls = [s for s in stored if s.name == "model.call"]
    assert all(c.attributes["gen_ai.usage.input_tokens"] > 0 for c in calls)
    assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in calls) == run.tokens_in
    assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in calls) == run.tokens_out
    (tool,) = [s for s in stored if s.name == "tool.call"]
    assert tool.attributes["gen_ai.tool.name"] == "echo"

    rollup_metrics(settle_seconds=0)
    from django.utils import timezone

    totals = metrics_totals(
        since=run.created_at.replace(second=0, microsecond=0),
        until=timezone.now(),
        agent=agent.slug,
    )
    assert (totals["run"].count, totals["run"].succeeded, totals["run"].started) == (1, 1, 1)
    assert (totals["model"].count, totals["model"].tokens_in, totals["model"].tokens_out) == (
        2,
        run.tokens_in,
        run.tokens_out,
    )
    assert (totals["tool"].count, totals["tool"].errors) == (1, 0)


def test_it_shows_a_failed_run_and_retries_it_from_its_checkpoint(
    worker, agent, devmodel, model_name, bob
):
    devmodel.script(model_name, [{"status": 400}])
    run_id = Api(bob).start_run(agent.slug, "hi")
    run = wait_for_run(run_id)
    assert (run.status, run.error_class) == (RunStatus.FAILED, "invalid_request")
    client = Client()
    client.force_login(bob)
    page = client.get(reverse("observe:failures"))
    groups = [(g.error_class, g.agent, g.count) for g in page.context["groups"]]
    assert groups == [("invalid_request", agent.slug, 1)]
    assert "Retry from checkpoint" in page.content.decode()
    client.post(reverse("observe:run_retry", args=[run_id]), {"next": reverse("observe:failures")})
    run = wait_for_run(
        run_id, statuses={RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.HANDED_OFF}
    )
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    statuses = [
        s.attributes.get("status")
        for s in Span.objects.filter(trace_id=run_id, name="run.status").order_by("seq")
    ]
    assert statuses == ["running", "failed", "running", "succeeded"]
    failed = Span.objects.get(trace_id=run_id, name="run.status", status="error")
    assert failed.error_class == "invalid_request"
    detail = client.get(reverse("observe:run", args=[run_id])).content.decode()
    assert "invalid_request" in detail and "succeeded" in detail

    # The worker's log: every line of the run carries the run's ids; the failure its class and traceback.
    # (RQ's own "job started/finished" lines are written outside the run, before and after it.)
    mine = [
        line for line in worker.output().splitlines() if str(run_id) in line and "[rq." not in line
    ]
    assert mine
    for line in mine:
        for part in (
            f"trace_id={run_id}",
            f"run_id={run_id}",
            f"session_id={run.session_id}",
            f"agent={agent.slug}",
        ):
            assert part in line, (part, line)
    (failure,) = [line for line in mine if "run.failed" in line]
    assert "error_class=invalid_request" in failure
    after = worker.output().split(failure, 1)[1].lstrip()
    assert after.startswith("Traceback"), after[:300]


def test_it_streams_a_run_to_a_browser_over_a_real_socket(worker, web, agent, bob, charlie):
    api = Api(bob, base=f"http://{web}")
    cookie = session_cookie(charlie)

    run_id, messages, statuses = asyncio.run(run_streamed(web, cookie, api, agent))
    assert span_seqs(messages) == stored_seqs(run_id)
    assert statuses[-1] == "succeeded"


def test_it_refuses_anonymous_and_foreign_origin_sockets(web, charlie):
    cookie = session_cookie(charlie)

    async def main():
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(
                f"ws://{web}/ws/ops/",
                additional_headers={"Cookie": f"sessionid={cookie}"},
                origin="http://evil.example",
            ):
                pass
        assert refused.value.response.status_code == 403  # a foreign origin: at the handshake
        # Signed out: closed with a code the page can read, so it stops reconnecting.
        async with websockets.connect(f"ws://{web}/ws/ops/", origin=f"http://{web}") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        async with websockets.connect(
            f"ws://{web}/ws/ops/",
            additional_headers={"Cookie": f"sessionid={cookie}"},
            origin=f"http://{web}",
        ) as ws:
            await ws.send(json.dumps({"kind": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"kind": "pong"}

    asyncio.run(main())


def test_it_scales_out_across_two_web_processes_and_two_workers(agent, bob, charlie):
    env = child_env()
    port_a, port_b = free_port(), free_port()
    procs = [
        start_web(env, port_a),
        start_web(env, port_b),
        start_worker(env, name="worker-1"),
        start_worker(env, name="worker-2"),
    ]
    try:
        api = Api(bob, base=f"http://127.0.0.1:{port_a}")
        cookie = session_cookie(charlie)
        web_b = f"127.0.0.1:{port_b}"

        run_id, messages, statuses = asyncio.run(run_streamed(web_b, cookie, api, agent))
    finally:
        for proc in procs:
            proc.stop()
    run = Run.objects.get(pk=run_id)
    assert run.status == RunStatus.SUCCEEDED
    host_pid = run.worker.rsplit(":", 1)
    assert len(host_pid) == 2 and int(host_pid[1]) not in (procs[0].pid, procs[1].pid), (
        "a worker ran it, not web A or B"
    )
    assert span_seqs(messages) == stored_seqs(run_id)
    assert "running" in statuses and statuses[-1] == "succeeded"
