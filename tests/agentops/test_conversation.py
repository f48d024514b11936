"""The conversation read model (agentops/conversation.py, `selectors.conversation_get`): one
shape for the console, the operator's view, the stream's snapshot, the live events and the
API, read in a fixed number of queries."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.test import Client

from agentops.conversation import conversation_serialise, message_serialise
from agentops.models import (
    Handoff,
    HandoffStatus,
    Message,
    Role,
    Run,
    RunStatus,
    SessionStatus,
    Team,
    ToolCall,
)
from agentops.runtime.checkpoint import messages_append
from agentops.selectors import conversation_get
from tests.agentops.helpers import user_communicator
from tests.factories import SessionFactory, UserFactory


def tool_call(call_id: str, name: str = "echo", arguments: str = '{"text":"ping"}') -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def handed_off_conversation(operator):  # type: ignore[no-untyped-def]
    session = SessionFactory(status=SessionStatus.HANDED_OFF, operator=operator)
    run = Run.objects.create(
        session=session,
        agent=session.agent,
        status=RunStatus.HANDED_OFF,
        wait_reason="asked for a human",
        step=2,
    )
    messages_append(
        session_id=session.pk,
        messages=[
            Message(role=Role.USER, content="ping me"),
            Message(role=Role.ASSISTANT, run=run, tool_calls=[tool_call("c1")]),
            Message(role=Role.TOOL, run=run, tool_call_id="c1", content="ping"),
            Message(role=Role.OPERATOR, content="Bob here", author=operator),
        ],
    )
    call = ToolCall.objects.create(
        run=run, step=1, call_id="c1", tool_name="echo", status="succeeded"
    )
    ToolCall.objects.filter(pk=call.pk).update(
        finished_at=call.started_at + timedelta(milliseconds=42)
    )
    handoff = Handoff.objects.create(
        session=session,
        run=run,
        reason="asked for a human",
        team=Team.objects.create(slug="billing", name="Billing"),
        priority=2,
        status=HandoffStatus.CLAIMED,
        claimed_by=operator,
    )
    return session, run, handoff


@pytest.mark.django_db
def test_it_serialises_a_conversation_in_one_shape():
    bob = UserFactory(username="bob", role="operator")
    session, run, handoff = handed_off_conversation(bob)
    data = conversation_serialise(conversation_get(session=session))
    messages = list(Message.objects.filter(session=session).order_by("seq"))
    assert data == {
        "session": str(session.pk),
        "status": "handed_off",
        "messages": [
            {
                "id": m.pk,
                "seq": m.seq,
                "role": m.role,
                "content": m.content,
                "tool_calls": m.tool_calls,
                "tool_call_id": m.tool_call_id,
                "name": "",
                "run_id": str(run.pk) if m.run_id else None,
                "agent": None,  # written by hand, not by an agent's run
                "author": "bob" if m.role == Role.OPERATOR else None,
                "client": "bob" if m.role == Role.OPERATOR else None,
                "created_at": m.created_at.isoformat(),
            }
            for m in messages
        ],
        "tool_calls": {"c1": {"status": "succeeded", "duration_ms": 42, "tool": "echo"}},
        "run": {
            "kind": "run.status",
            "run_id": str(run.pk),
            "session_id": str(session.pk),
            "agent": session.agent.slug,
            "status": "handed_off",
            "error_class": "",
            "error_message": "",
            "wait_reason": "asked for a human",
            "step": 2,
        },
        "running": False,
        "handoff": {
            "id": handoff.pk,
            "status": "claimed",
            "reason": "asked for a human",
            "team": "billing",
            "priority": 2,
            "claimed_by": "bob",
            "created_at": handoff.created_at.isoformat(),
        },
    }
    assert [message_serialise(m) for m in messages] == data["messages"]  # the live events


@pytest.mark.django_db
def test_it_lays_out_tool_calls_with_their_results_status_and_duration():
    bob = UserFactory(username="bob", role="operator")
    session, _, _ = handed_off_conversation(bob)
    items = conversation_get(session=session).items
    assert [i.message.role for i in items] == ["user", "assistant", "operator"]  # result folded
    (view,) = items[1].tool_calls
    assert (view.call_id, view.name, view.status, view.duration_ms) == (
        "c1",
        "echo",
        "succeeded",
        42,
    )
    assert view.result == "ping" and view.result_seq == 3
    assert view.arguments == '{\n  "text": "ping"\n}'
    assert [i.seq for i in items if i.changed_since(2)] == [2, 4]  # its result came after 2


@pytest.mark.django_db
def test_it_reads_a_conversation_in_four_queries_however_long(django_assert_num_queries):
    short = SessionFactory()
    messages_append(
        session_id=short.pk,
        messages=[Message(role=Role.ASSISTANT, tool_calls=[tool_call("c0")])],
    )
    with django_assert_num_queries(4):
        conversation_get(session=short)

    long = SessionFactory()
    rows = []
    for i in range(30):
        run = Run.objects.create(session=long, agent=long.agent, status=RunStatus.SUCCEEDED)
        author = UserFactory(username=f"author{i}")
        ToolCall.objects.create(
            run=run, step=1, call_id=f"c{i}", tool_name="echo", status="succeeded"
        )
        rows += [
            Message(role=Role.OPERATOR, content=f"note {i}", author=author),
            Message(role=Role.ASSISTANT, run=run, tool_calls=[tool_call(f"c{i}")]),
            Message(role=Role.TOOL, run=run, tool_call_id=f"c{i}", content=f"result {i}"),
        ]
    Handoff.objects.create(session=long, reason="help", status=HandoffStatus.OPEN)
    messages_append(session_id=long.pk, messages=rows)
    with django_assert_num_queries(4):
        conversation = conversation_get(session=long)
        data = conversation_serialise(conversation)
    assert len(data["messages"]) == 90 and len(data["tool_calls"]) == 30
    assert {i.message.author.get_username() for i in conversation.items if i.message.author} == {
        f"author{i}" for i in range(30)
    }


@pytest.mark.django_db(transaction=True)
def test_it_gives_the_api_and_the_streams_snapshot_the_same_conversation(bob):
    session, _, _ = handed_off_conversation(bob)
    client = Client()
    client.force_login(bob)
    api = client.get(f"/api/sessions/{session.pk}/messages").json()

    async def snapshot():
        communicator = user_communicator(f"/ws/sessions/{session.pk}/", bob)
        assert (await communicator.connect())[0]
        first = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return first

    streamed = asyncio.run(snapshot())
    expected = conversation_serialise(conversation_get(session=session))
    assert api == expected
    assert streamed["kind"] == "snapshot"
    assert streamed["session"] == {"id": str(session.pk), "status": "handed_off"}
    assert {k: v for k, v in streamed.items() if k not in ("kind", "session")} == {
        k: v for k, v in expected.items() if k != "session"
    }
