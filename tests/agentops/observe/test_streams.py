"""The /ws/runs/ and /ws/ops/ streams through the real ASGI application and Redis layer."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from agentops.observe.consumers import RunConsumer
from tests.agentops.helpers import refusal_code
from tests.agentops.observe.conftest import (
    communicator,
    joined,
    receive_until,
    run_async,
    session_cookie,
    span_seqs,
)
from tests.factories import UserFactory
from tests.kit import until, until_async
from tracing.emit import Tracer
from tracing.platform.hub import coalesce
from tracing.platform.live import (
    OPS_GROUP,
    broadcast,
    capture_live_events,
    open_notices,
    run_group,
    send_now,
    wait_sent,
)


def emit(run, count: int, *, tracer: Tracer | None = None, name: str = "tool.call") -> Tracer:
    tracer = tracer or Tracer(run.pk, session_id=run.session_id, agent=run.agent.slug)
    for i in range(count):
        with tracer.span(name, index=i):
            pass
    tracer.flush_now()
    wait_sent()
    return tracer


@pytest.mark.parametrize(("who", "code"), [("anonymous", 4401), ("no role", 4403)])
def test_it_refuses_streams_to_anonymous_and_roleless_users(run, who, code):
    cookie = "" if who == "anonymous" else session_cookie(UserFactory(username="dave"))

    async def main():
        for path in (f"/ws/runs/{run.pk}/", "/ws/ops/", f"/ws/sessions/{run.session_id}/"):
            assert await refusal_code(communicator(path, cookie)) == code, path

    run_async(main)


def test_it_refuses_a_foreign_origin_and_an_unknown_run(run, charlie):
    cookie = session_cookie(charlie)

    async def main():
        comm = communicator(f"/ws/runs/{run.pk}/", cookie, origin="http://evil.example")
        assert not (await comm.connect())[0]
        await comm.disconnect()
        comm = communicator("/ws/runs/00000000-0000-0000-0000-000000000000/", cookie)
        assert await refusal_code(comm) == 4404

    run_async(main)


def test_it_replays_stored_spans_then_streams_live_ones(run, charlie):
    cookie = session_cookie(charlie)
    tracer = emit(run, 3)

    async def main():
        comm = communicator(f"/ws/runs/{run.pk}/", cookie)
        assert (await comm.connect())[0]
        first = await receive_until(comm, lambda ms: ms and ms[-1]["kind"] == "replay.done")
        assert span_seqs(first) == [1, 2, 3]
        assert all(m.get("replay") for m in first if m["kind"] == "spans")
        await sync_to_async(emit)(run, 2, tracer=tracer)
        live = await receive_until(comm, lambda ms: span_seqs(ms)[-1:] == [5])
        assert span_seqs(live) == [4, 5]
        assert not [m for m in live if m["kind"] == "span.start"], (
            "spans that end at once are not announced"
        )

        def slow_span():
            group = run_group(run.pk)
            with tracer.span("model.call") as record:  # open until its start was announced
                assert until(
                    lambda: any(n["span_id"] == record.span_id for n in open_notices(group))
                )
            tracer.flush_now()
            wait_sent()
            return record.span_id

        span_id = await sync_to_async(slow_span)()
        slow = await receive_until(comm, lambda ms: span_seqs(ms)[-1:] == [6])
        assert [m["kind"] for m in slow] == ["span.start", "spans"]
        assert slow[0]["span_id"] == span_id and slow[0]["name"] == "model.call"
        await comm.disconnect()

    run_async(main)


def test_it_joins_mid_run_with_nothing_missing_or_duplicated(run, charlie):
    """The writer flushes without pause from before the client connects until well after its
    replay, so spans are committed and published while the client joins and reads."""
    cookie = session_cookie(charlie)
    started, connected = threading.Event(), threading.Event()
    last: list[int] = []

    def writer():
        tracer = Tracer(run.pk, session_id=run.session_id, agent="a")
        after_connect = 0
        while after_connect < 20:
            for _ in range(4):
                with tracer.span("tool.call"):
                    pass
            last[:] = [s.seq for s in tracer.flush_now()][-1:]
            started.set()
            if connected.is_set():
                after_connect += 1
            time.sleep(0.002)  # on purpose: a steady writer, not a tight loop
        wait_sent()
        connections.close_all()

    async def main():
        thread = threading.Thread(target=writer)
        thread.start()
        await asyncio.to_thread(started.wait, 10)
        comm = communicator(f"/ws/runs/{run.pk}/", cookie)
        assert (await comm.connect())[0]
        head = await receive_until(comm, lambda ms: any(m["kind"] == "replay.done" for m in ms))
        connected.set()
        await asyncio.to_thread(thread.join)
        tail = await receive_until(comm, lambda ms: span_seqs(ms)[-1:] == last, timeout=30)
        await comm.disconnect()
        return head + tail

    messages = run_async(main)
    assert span_seqs(messages) == list(range(1, last[0] + 1))
    assert [m for m in messages if m.get("replay")], "part of the trace came from the database"
    live = [m for m in messages if m["kind"] == "spans" and not m.get("replay")]
    assert len(span_seqs(live)) >= 80, "and part of it live, after the replay"


def test_it_streams_ops_events_to_viewers(run, charlie):
    cookie = session_cookie(charlie)

    async def main():
        comm = communicator("/ws/ops/", cookie)
        assert (await comm.connect())[0]
        await joined(comm)

        def announce():
            send_now(OPS_GROUP, {"kind": "run.status", "run_id": str(run.pk), "status": "running"})
            wait_sent()

        await sync_to_async(announce)()
        (message,) = await receive_until(comm, lambda ms: len(ms) == 1)
        assert message == {"kind": "run.status", "run_id": str(run.pk), "status": "running"}
        await comm.disconnect()

    run_async(main)


def test_it_sends_nothing_that_a_rollback_undid(run):
    from django.db import transaction

    with capture_live_events() as sent:
        try:
            with transaction.atomic():
                broadcast(OPS_GROUP, {"kind": "run.status", "status": "undone"})
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        with transaction.atomic():
            broadcast(OPS_GROUP, {"kind": "run.status", "status": "kept"})
            assert sent == [], "nothing is sent before the commit"
    assert sent == [(OPS_GROUP, {"kind": "run.status", "status": "kept"})]


def test_it_coalesces_span_batches_and_drops_finished_span_starts():
    messages = [
        {"kind": "span.start", "span_id": "a"},
        {"kind": "spans", "spans": [{"seq": 1, "span_id": "a"}]},
        {"kind": "spans", "spans": [{"seq": 2, "span_id": "b"}]},
        {"kind": "span.start", "span_id": "c"},
        {"kind": "run.status", "status": "running"},
        {"kind": "spans", "spans": [{"seq": 3, "span_id": "d"}]},
    ]
    assert coalesce(messages) == [
        {
            "kind": "spans",
            "spans": [{"seq": 1, "span_id": "a"}, {"seq": 2, "span_id": "b"}],
            "replay": False,
        },
        {"kind": "span.start", "span_id": "c"},
        {"kind": "run.status", "status": "running"},
        {"kind": "spans", "spans": [{"seq": 3, "span_id": "d"}]},
    ]


class SlowBrowserRunConsumer(RunConsumer):
    """A browser that takes nothing until `gate` opens (sends wait on it). `listening` is set
    once the consumer joined its group, with the consumer as `current`."""

    max_pending_spans = 40
    gate: asyncio.Event
    listening: asyncio.Event
    current: SlowBrowserRunConsumer

    async def joined(self):
        await super().joined()
        type(self).current = self
        self.listening.set()

    async def send(self, text_data=None, bytes_data=None, close=False):
        await self.gate.wait()
        await super().send(text_data, bytes_data, close)


def test_it_bounds_what_waits_for_a_slow_browser_and_still_delivers_everything(run, charlie):
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter
    from channels.testing.websocket import WebsocketCommunicator
    from django.urls import path

    cookie = session_cookie(charlie)
    app = AuthMiddlewareStack(
        URLRouter([path("ws/runs/<uuid:run_id>/", SlowBrowserRunConsumer.as_asgi())])
    )

    async def main():
        SlowBrowserRunConsumer.gate = asyncio.Event()
        SlowBrowserRunConsumer.listening = asyncio.Event()
        comm = WebsocketCommunicator(
            app, f"/ws/runs/{run.pk}/", headers=[(b"cookie", f"sessionid={cookie}".encode())]
        )
        assert (await comm.connect())[0]
        await asyncio.wait_for(SlowBrowserRunConsumer.listening.wait(), 10)
        consumer = SlowBrowserRunConsumer.current
        await until_async(lambda: consumer._resumed)  # the (empty) replay is done: all is live
        tracer = None
        for _ in range(30):
            tracer = await sync_to_async(emit)(run, 5, tracer=tracer)
        await until_async(lambda: consumer._last_seq == 150)  # all reached it, the browser none
        SlowBrowserRunConsumer.gate.set()
        messages = await receive_until(comm, lambda ms: span_seqs(ms)[-1:] == [150])
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()
        return messages

    messages = run_async(main)
    assert span_seqs(messages) == list(range(1, 151))
    batches = [m for m in messages if m["kind"] == "spans"]
    assert any(m.get("catch_up") for m in batches), (
        "the backlog was dropped and re-read from the database"
    )
    assert len(batches) < 30


def test_it_replays_spans_open_when_the_client_connects_with_their_text(run, charlie):
    """Open spans exist only in the worker's memory: a client joining mid-span learns of them."""
    cookie = session_cookie(charlie)
    group = run_group(run.pk)
    tracer = Tracer(run.pk, session_id=run.session_id, agent=run.agent.slug)
    with (
        tracer.span("step", step=1) as step,
        tracer.span("model.call", **{"gen_ai.request.model": "m-1"}) as call,
    ):
        tracer.stream_text("Hello ")
        assert until(lambda: sorted(n.get("text") for n in open_notices(group)) == ["", "Hello "])

        async def main():
            comm = communicator(f"/ws/runs/{run.pk}/", cookie)
            assert (await comm.connect())[0]
            head = await receive_until(comm, lambda ms: ms and ms[-1]["kind"] == "replay.done")

            def more():
                tracer.stream_text("world")
                wait_sent()

            await sync_to_async(more)()
            (text,) = await receive_until(comm, lambda ms: len(ms) == 1)
            await comm.disconnect()
            return head, text

        head, text = run_async(main)
    starts = {m["span_id"]: m for m in head if m["kind"] == "span.start"}
    assert set(starts) == {step.span_id, call.span_id}
    assert all(m["replay"] for m in starts.values())
    assert starts[call.span_id]["name"] == "model.call"
    assert starts[call.span_id]["parent_span_id"] == step.span_id
    assert starts[call.span_id]["attributes"] == {"gen_ai.request.model": "m-1"}
    assert starts[call.span_id]["text"] == "Hello " and starts[call.span_id]["text_end"] == 6
    assert text == {"kind": "span.text", "span_id": call.span_id, "at": 6, "text": "world"}
    tracer.flush_now()
    wait_sent()
    assert until(lambda: not open_notices(group)), "ended spans are no longer open"
