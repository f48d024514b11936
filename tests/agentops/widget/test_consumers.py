"""`/ws/widget/`: the frame's token opens it, only the end user's own conversation is
followed, tool traffic stays hidden, and a reconnect resumes after the last seq seen."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from agentops.models import Message, Role, Run, RunStatus
from agentops.runtime.checkpoint import messages_append, status_broadcast
from agentops.widget.services import enduser_session_open, enduser_token_issue
from tests.agentops.observe.conftest import communicator, run_async
from tests.agentops.widget.helpers import enduser, make_key
from tracing.platform.live import wait_sent

pytestmark = pytest.mark.django_db(transaction=True)


async def hello(token: str, session: str | None = None, after: int = 0):  # type: ignore[no-untyped-def]
    comm = communicator("/ws/widget/")
    connected, _ = await comm.connect(timeout=5)
    assert connected
    await comm.send_json_to({"kind": "hello", "token": token, "session": session, "after": after})
    return comm


async def receive(comm, count: int) -> list[dict]:  # type: ignore[no-untyped-def]
    """The next `count` frames; a close is {"closed": code}."""
    out = []
    for _ in range(count):
        try:
            output = await comm.receive_output(timeout=10)
        except TimeoutError:
            raise AssertionError(f"got only {out}") from None
        if output["type"] == "websocket.close":
            out.append({"closed": output.get("code")})
            break
        out.append(json.loads(output["text"]))
    return out


def test_it_refuses_a_forged_token_and_another_users_session():
    key, _ = make_key()
    mine = enduser_session_open(key=key, enduser=enduser(key), address="127.0.0.1")
    messages_append(session_id=mine.pk, messages=[Message(role=Role.USER, content="my secret")])
    stranger = enduser_token_issue(key=key, identity="visitor:stranger")
    other_key, _ = make_key()  # another agent's key, same end-user name
    foreign = enduser_token_issue(key=other_key, identity="visitor:me")

    async def scenario() -> list[list[dict]]:
        seen = []
        for token, session in (
            (enduser_token_issue(key=key, identity="visitor:me") + "x", None),
            (stranger, str(mine.pk)),
            (foreign, str(mine.pk)),
        ):
            comm = await hello(token, session)
            seen.append(await receive(comm, 2))
        # Without naming the session, the stranger and the other agent's user see nothing.
        for token in (stranger, foreign):
            comm = await hello(token)
            seen.append(await receive(comm, 1))
            assert await comm.receive_nothing(timeout=0.3)
            await comm.disconnect()
        return seen

    forged, stolen, other_agent, stranger_own, foreign_own = run_async(scenario)
    assert forged == [{"kind": "refused", "error": "invalid end-user token"}, {"closed": 4403}]
    assert stolen == other_agent
    assert stolen == [{"kind": "refused", "error": "not your conversation"}, {"closed": 4403}]
    assert stranger_own == foreign_own == [{"kind": "state", "session_id": None, "status": "new"}]


def test_another_key_of_the_agent_cannot_follow_its_users_conversation():
    """What identify gives key B's site for "alice" does not reach key A's Alice."""
    key_a, _ = make_key()
    key_b, _ = make_key(agent=key_a.agent)
    hers = enduser_session_open(
        key=key_a, enduser=enduser(key_a, "user:alice"), address="127.0.0.1"
    )
    messages_append(session_id=hers.pk, messages=[Message(role=Role.USER, content="canary 7731")])
    token_b = enduser_token_issue(key=key_b, identity="user:alice")
    token_a = enduser_token_issue(key=key_a, identity="user:alice")

    async def scenario() -> tuple[list[dict], list[dict], list[dict]]:
        named = await receive(await hello(token_b, str(hers.pk)), 2)
        own = await hello(token_b)
        unnamed = await receive(own, 1)
        assert await own.receive_nothing(timeout=0.3)
        await own.disconnect()
        alice = await hello(token_a)
        mine = await receive(alice, 2)
        await alice.disconnect()
        return named, unnamed, mine

    named, unnamed, mine = run_async(scenario)
    assert named == [{"kind": "refused", "error": "not your conversation"}, {"closed": 4403}]
    assert unnamed == [{"kind": "state", "session_id": None, "status": "new"}]
    assert mine[0]["session_id"] == str(hers.pk) and mine[1]["content"] == "canary 7731"


def test_it_resumes_after_the_last_seq_without_gap_or_duplicate():
    key, _ = make_key()
    session = enduser_session_open(key=key, enduser=enduser(key), address="127.0.0.1")
    token = enduser_token_issue(key=key, identity="visitor:me")
    run = Run.objects.create(session=session, agent=session.agent, status=RunStatus.RUNNING)
    messages_append(
        session_id=session.pk,
        messages=[
            Message(role=Role.USER, content="one"),
            Message(
                role=Role.ASSISTANT,
                run=run,
                tool_calls=[{"id": "c1", "type": "function", "function": {"name": "x"}}],
            ),
            Message(role=Role.TOOL, tool_call_id="c1", content="internal tool result", run=run),
            Message(role=Role.ASSISTANT, content="two", run=run),
        ],
    )

    async def scenario() -> tuple[list[dict], list[dict]]:
        first = await hello(token)
        got = await receive(first, 3)
        assert await first.receive_nothing(timeout=0.3)
        await first.disconnect()  # dropped: the client saw up to seq 4
        await sync_to_async(messages_append)(
            session_id=session.pk, messages=[Message(role=Role.ASSISTANT, content="three")]
        )
        second = await hello(token, str(session.pk), after=4)
        resumed = await receive(second, 2)  # state and the missed message: now following
        await sync_to_async(messages_append)(
            session_id=session.pk, messages=[Message(role=Role.OPERATOR, content="four")]
        )
        run.status = RunStatus.HANDED_OFF
        await sync_to_async(status_broadcast)(run)
        await sync_to_async(wait_sent)()
        resumed += await receive(second, 2)
        assert await second.receive_nothing(timeout=0.5)
        await second.disconnect()
        return got, resumed

    got, resumed = run_async(scenario)
    assert got[0]["kind"] == "state" and got[0]["session_id"] == str(session.pk)
    assert [(m["seq"], m["content"]) for m in got[1:]] == [(1, "one"), (4, "two")]
    assert "internal tool result" not in str(got)
    messages = [m for m in resumed if m["kind"] == "message"]
    assert [(m["seq"], m["content"]) for m in messages] == [(5, "three"), (6, "four")]
    assert {"kind": "status", "run_id": str(run.pk), "status": "handed_off"} in resumed
