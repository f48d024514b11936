import asyncio

import pytest
from django.contrib.auth.models import AnonymousUser

from agentops.models import Message
from agentops.runtime.checkpoint import messages_append
from tests.agentops.helpers import refusal_code, user_communicator
from tests.factories import SessionFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def connect_and_receive(path, user, origin=b"http://127.0.0.1"):
    async def scenario():
        communicator = user_communicator(path, user, origin)
        connected, _ = await communicator.connect()
        first = await communicator.receive_json_from(timeout=5) if connected else None
        await communicator.disconnect()
        return connected, first

    return asyncio.run(scenario())


@pytest.fixture
def session(db):
    return SessionFactory()


def close_code(path, user):
    return asyncio.run(refusal_code(user_communicator(path, user)))


def test_it_refuses_anonymous_and_roleless_users_and_unknown_sessions(session, charlie):
    path = f"/ws/sessions/{session.pk}/"
    assert close_code(path, AnonymousUser()) == 4401
    assert close_code(path, UserFactory(username="dave")) == 4403
    assert close_code("/ws/sessions/00000000-0000-0000-0000-000000000000/", charlie) == 4404


def test_it_refuses_a_foreign_origin(session, charlie):
    connected, _ = connect_and_receive(
        f"/ws/sessions/{session.pk}/", charlie, b"http://evil.example"
    )
    assert not connected


def test_it_sends_a_snapshot_to_a_viewer(session, charlie):
    messages_append(session_id=session.pk, messages=[Message(role="user", content="<b>hi</b>")])
    connected, snapshot = connect_and_receive(f"/ws/sessions/{session.pk}/", charlie)
    assert connected
    assert snapshot["kind"] == "snapshot"
    assert [m["content"] for m in snapshot["messages"]] == ["<b>hi</b>"]


def test_it_sends_the_snapshot_then_live_events_and_answers_pings(session, charlie):
    from tracing.platform.live import send_now, session_group, wait_sent

    async def scenario():
        communicator = user_communicator(f"/ws/sessions/{session.pk}/", charlie)
        assert (await communicator.connect())[0]
        first = await communicator.receive_json_from(timeout=5)  # the subscription is live
        send_now(session_group(session.pk), {"kind": "token", "text": "live"})
        await asyncio.to_thread(wait_sent)
        await communicator.send_json_to({"kind": "ping"})
        await communicator.send_json_to({"kind": "message", "content": "hi"})
        rest = [await communicator.receive_json_from(timeout=5) for _ in range(3)]
        await communicator.disconnect()
        return first, rest

    first, rest = asyncio.run(scenario())
    assert first["kind"] == "snapshot"
    assert {m["kind"] for m in rest} == {"token", "pong", "error"}


def test_it_forwards_a_batch_of_live_events_in_order(session, charlie):
    from channels.layers import get_channel_layer

    from tracing.platform.live import session_group

    async def scenario():
        communicator = user_communicator(f"/ws/sessions/{session.pk}/", charlie)
        assert (await communicator.connect())[0]
        await communicator.receive_json_from(timeout=5)  # the snapshot
        group = session_group(session.pk)
        events = [{"kind": "token", "text": "one"}, {"kind": "token", "text": "two"}]
        await get_channel_layer().group_send(
            group, {"type": "live.batch", "group": group, "events": events}
        )
        received = [await communicator.receive_json_from(timeout=5) for _ in events]
        await communicator.disconnect()
        return received

    assert [e["text"] for e in asyncio.run(scenario())] == ["one", "two"]
