"""The widget's socket shares the conversation's group with the staff conversation stream,
whose resume marker (`live.sync`) is published on that group: the widget ignores it."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from agentops.models import Message, Role
from agentops.runtime.checkpoint import messages_append
from agentops.widget.services import enduser_session_open, enduser_token_issue
from tests.agentops.observe.conftest import communicator, receive_until, run_async, session_cookie
from tests.agentops.widget.helpers import enduser, make_key
from tracing.platform.live import wait_sent

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_widget_keeps_following_while_staff_open_the_conversation(alice):
    key, _ = make_key()
    session = enduser_session_open(key=key, enduser=enduser(key), address="127.0.0.1")
    token = enduser_token_issue(key=key, identity="visitor:me")
    cookie = session_cookie(alice)

    async def scenario() -> list[dict]:
        widget = communicator("/ws/widget/")
        assert (await widget.connect(timeout=5))[0]
        await widget.send_json_to({"kind": "hello", "token": token, "session": str(session.pk)})
        assert json.loads((await widget.receive_output(timeout=10))["text"])["kind"] == "state"
        staff = communicator(f"/ws/sessions/{session.pk}/", cookie)
        assert (await staff.connect(timeout=5))[0]
        await receive_until(staff, lambda ms: any(m.get("kind") == "snapshot" for m in ms))
        await sync_to_async(messages_append)(
            session_id=session.pk, messages=[Message(role=Role.OPERATOR, content="still here")]
        )
        await sync_to_async(wait_sent)()
        got = await receive_until(widget, lambda ms: any(m.get("kind") == "message" for m in ms))
        await staff.disconnect()
        await widget.disconnect()
        return got

    got = run_async(scenario)
    assert [m["content"] for m in got if m.get("kind") == "message"] == ["still here"]
