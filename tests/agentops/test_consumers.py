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
