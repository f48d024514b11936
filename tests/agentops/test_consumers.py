import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from agentops.asgi import application
from agentops.models import Message
from agentops.runtime.checkpoint import messages_append
from tests.factories import SessionFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def connect_and_receive(path, user, origin=b"http://127.0.0.1"):
    async def scenario():
        communicator = WebsocketCommunicator(
            application, path, headers=[(b"origin", origin), (b"host", b"127.0.0.1")]
        )
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        first = await communicator.receive_json_from(timeout=5) if connected else None
        await communicator.disconnect()
        return connected, first

    return asyncio.run(scenario())


@pytest.fixture
def session(db):
    return SessionFactory()


def test_it_refuses_anonymous_and_roleless_users(session):
    for user in [AnonymousUser(), UserFactory(username="dave")]:
        connected, _ = connect_and_receive(f"/ws/sessions/{session.pk}/", user)
        assert not connected


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


def test_it_forwards_a_batch_of_live_events_in_order(session, charlie):
    from channels.layers import get_channel_layer

    from tracing.live import session_group

    async def scenario():
        communicator = WebsocketCommunicator(
            application,
            f"/ws/sessions/{session.pk}/",
            headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
        )
        communicator.scope["user"] = charlie
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
