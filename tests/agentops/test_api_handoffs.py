"""The takeover through the API alone (agentops/operators/*/api.py): the pages' services and
role rules, 409 for a lost race or a wrong state, pending approvals listed."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from agentops.models import (
    Handoff,
    HandoffStatus,
    Run,
    RunStatus,
    SessionStatus,
    ToolCall,
    ToolCallStatus,
)
from tests.agentops.operators.helpers import make_handoff
from tests.agentops.runtime.helpers import wait_for_package, wait_for_run
from tests.factories import SessionFactory, UserFactory
from tests.kit import bearer
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)


def post(client: Client, path: str, headers: dict[str, str], body: dict | None = None):
    return client.post(path, body or {}, content_type="application/json", **headers)


def test_it_takes_over_through_the_api_alone(client, bob, dev_agent, worker):
    dev_agent.tools.add(*python_tools_sync())
    integrator = UserFactory(username="integrator", role="operator")
    backend, operator = bearer(integrator), bearer(bob)

    created = post(client, "/api/sessions", backend, {"agent": dev_agent.slug, "user": "erin"})
    session = created.json()["id"]
    posted = post(
        client, f"/api/sessions/{session}/messages", backend, {"content": "a human please"}
    )
    assert wait_for_run(posted.json()["run"]).status == RunStatus.HANDED_OFF

    handoff = Handoff.objects.get(session_id=session)
    wait_for_package(handoff.pk)
    (listed,) = client.get("/api/handoffs", **operator).json()["handoffs"]
    assert listed["id"] == handoff.pk and listed["status"] == "open"
    assert listed["summary"].startswith("Summary:") and listed["suggested_reply"]
    assert [c["tool"] for c in listed["last_tool_calls"]] == ["handoff_to_human"]
    assert listed["priority"] == 2 and "team" in listed

    claimed = post(client, f"/api/handoffs/{handoff.pk}/claim", operator)
    assert claimed.status_code == 200, claimed.content
    assert claimed.json()["status"] == "claimed" and claimed.json()["claimed_by"] == "bob"
    replied = post(
        client, f"/api/handoffs/{handoff.pk}/reply", operator, {"content": "Hello, Bob here."}
    )
    assert replied.status_code == 201, replied.content
    assert replied.json()["role"] == "operator" and replied.json()["author"] == "bob"
    # The end user answers the operator: stored, no run while a human has the conversation.
    waiting = post(
        client, f"/api/sessions/{session}/messages", backend, {"content": "my order is 42"}
    )
    assert waiting.status_code == 202 and waiting.json()["run"] is None

    back = post(client, f"/api/handoffs/{handoff.pk}/hand-back", operator)
    assert back.status_code == 202, back.content
    assert back.json()["handoff"]["resolution"] == "handed_back"
    assert wait_for_run(back.json()["run"]).status == RunStatus.SUCCEEDED
    messages = client.get(f"/api/sessions/{session}/messages", **backend).json()["messages"]
    assert [(m["role"], m["author"]) for m in messages if m["role"] != "tool" and m["content"]] == [
        ("user", "erin"),
        ("operator", "bob"),
        ("user", "erin"),
        ("assistant", None),
    ]
    assert messages[-1]["content"] == "You said: my order is 42"
    users = [m for m in messages if m["role"] == "user"]
    assert {m["client"] for m in users} == {"integrator"}  # the key's owner, kept apart

    again = post(client, f"/api/sessions/{session}/messages", backend, {"content": "operator!"})
    assert wait_for_run(again.json()["run"]).status == RunStatus.HANDED_OFF
    second = Handoff.objects.get(session_id=session, status=HandoffStatus.OPEN)
    assert post(client, f"/api/handoffs/{second.pk}/claim", operator).status_code == 200
    closed = post(client, f"/api/handoffs/{second.pk}/close", operator)
    assert closed.status_code == 200 and closed.json()["resolution"] == "closed"
    assert client.get(f"/api/sessions/{session}", **backend).json()["status"] == "closed"
    refused = post(client, f"/api/sessions/{session}/messages", backend, {"content": "hello?"})
    assert refused.status_code == 409 and "closed" in refused.json()["error"]


def test_it_applies_the_pages_role_rules(client, alice, bob, charlie):
    handoff = make_handoff()
    viewer, operator, admin = bearer(charlie), bearer(bob), bearer(alice)
    dave = UserFactory(username="dave", role="operator")
    for action in ("claim", "reply", "hand-back", "close", "reassign"):
        body = {"content": "x", "operator": "bob"}
        refused = post(client, f"/api/handoffs/{handoff.pk}/{action}", viewer, body)
        assert refused.status_code == 403, action
        assert "role" in refused.json()["error"]
    assert post(client, "/api/handoffs/999999/claim", operator).status_code == 404

    assert post(client, f"/api/handoffs/{handoff.pk}/claim", bearer(dave)).status_code == 200
    taken = post(client, f"/api/handoffs/{handoff.pk}/reply", operator, {"content": "hi"})
    assert taken.status_code == 409 and "claimed by dave" in taken.json()["error"]
    assert post(client, f"/api/handoffs/{handoff.pk}/close", operator).status_code == 409
    assert (
        post(client, f"/api/handoffs/{handoff.pk}/reassign", operator, {"operator": "bob"})
    ).status_code == 403
    unknown = post(client, f"/api/handoffs/{handoff.pk}/reassign", admin, {"operator": "nobody"})
    assert unknown.status_code == 422 and unknown.json()["error"].startswith("operator:")
    moved = post(client, f"/api/handoffs/{handoff.pk}/reassign", admin, {"operator": "bob"})
    assert moved.status_code == 200 and moved.json()["claimed_by"] == "bob"
    empty = post(client, f"/api/handoffs/{handoff.pk}/reply", operator, {"content": ""})
    assert empty.status_code == 422 and empty.json()["field"] == "content"
    assert post(client, f"/api/handoffs/{handoff.pk}/close", operator).status_code == 200
    again = post(client, f"/api/handoffs/{handoff.pk}/close", operator)
    assert again.status_code == 409 and "resolved" in again.json()["error"]
    handoff.refresh_from_db()
    assert handoff.session.status == SessionStatus.CLOSED


def test_it_lets_one_of_many_racing_api_clients_claim(db):
    handoff = make_handoff()
    keys = [bearer(UserFactory(username=f"op{i}", role="operator")) for i in range(6)]
    barrier = threading.Barrier(len(keys))
    answers: list = []

    def claim(headers):
        try:
            barrier.wait()
            answers.append(post(Client(), f"/api/handoffs/{handoff.pk}/claim", headers))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(k,)) for k in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409, 409, 409, 409, 409]
    winner = next(a for a in answers if a.status_code == 200).json()["claimed_by"]
    for lost in (a for a in answers if a.status_code == 409):
        assert lost.json() == {"error": f"{winner} claimed it first"}


def test_it_lists_the_tool_calls_awaiting_approval(client, bob, charlie):
    session = SessionFactory()
    run = Run.objects.create(session=session, agent=session.agent, status=RunStatus.WAITING)
    call = ToolCall.objects.create(
        run=run,
        step=1,
        call_id="c1",
        tool_name="refund",
        arguments={"amount": 5},
        status=ToolCallStatus.AWAITING_APPROVAL,
    )
    ToolCall.objects.create(
        run=run, step=0, call_id="c0", tool_name="echo", status=ToolCallStatus.SUCCEEDED
    )
    viewer = bearer(charlie)
    (listed,) = client.get("/api/tool-calls?status=awaiting_approval", **viewer).json()[
        "tool_calls"
    ]
    assert listed["id"] == call.pk and listed["tool"] == "refund"
    assert listed["arguments"] == {"amount": 5} and listed["run"] == str(run.pk)
    assert listed["session"] == str(session.pk)
    detail = client.get(f"/api/runs/{run.pk}", **viewer).json()
    assert [c["id"] for c in detail["pending_approvals"]] == [call.pk]

    decided = post(client, f"/api/tool-calls/{call.pk}/decision", bearer(bob), {"approve": True})
    assert decided.status_code == 200
    assert client.get("/api/tool-calls", **viewer).json()["tool_calls"] == []
    assert client.get(f"/api/runs/{run.pk}", **viewer).json()["pending_approvals"] == []
    (approved,) = client.get("/api/tool-calls?status=approved", **viewer).json()["tool_calls"]
    assert approved["decided_by"] == "bob"
    bad = client.get("/api/tool-calls?status=nope", **viewer)
    assert bad.status_code == 422 and bad.json()["field"] == "status"
    # The decision woke the run: the module's worker drives it. It must be done before the
    # test's database is flushed (a flush beside its writes deadlocked once in CI).
    wait_for_run(run.pk)
