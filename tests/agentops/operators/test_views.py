"""Queue, claimed view, approvals, audit and figures through the real views and roles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from agentops.models import (
    AuditEntry,
    Handoff,
    HandoffStatus,
    Message,
    Role,
    Run,
    RunStatus,
    ToolCall,
    ToolCallStatus,
)
from agentops.operators.assignment.services import handoff_claim
from agentops.operators.queue.selectors import handoff_figures
from memory.models import Memory
from tests.agentops.observe.conftest import communicator, receive_until, run_async, session_cookie
from tests.agentops.operators.helpers import make_handoff
from tests.factories import AgentFactory, SessionFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_lists_open_handoffs_by_priority_then_age(charlie):
    late_urgent = make_handoff(priority=1, reason="urgent one")
    old_normal = make_handoff(priority=2, reason="normal old")
    Handoff.objects.filter(pk=old_normal.pk).update(created_at=timezone.now() - timedelta(hours=1))
    newer_normal = make_handoff(priority=2, reason="normal new")
    page = client_for(charlie).get("/operators/").content.decode()
    positions = [
        page.index(f'data-handoff="{h.pk}"') for h in (late_urgent, old_normal, newer_normal)
    ]
    assert positions == sorted(positions)
    assert "waiting 1\xa0hour" in page
    assert "Summary: the user wants a human." in page
    assert 'action="/operators/handoffs/' not in page  # viewers get no claim button


def test_it_shows_an_empty_queue(bob):
    page = client_for(bob).get("/operators/").content.decode()
    assert "Nobody is waiting" in page and "No tool call is waiting for approval" in page


def test_it_refuses_claims_by_viewers(charlie):
    handoff = make_handoff()
    assert client_for(charlie).post(f"/operators/handoffs/{handoff.pk}/claim").status_code == 403
    assert Handoff.objects.get(pk=handoff.pk).status == HandoffStatus.OPEN


def test_it_claims_then_tells_the_second_operator_who_won(bob):
    handoff = make_handoff()
    dave = UserFactory(username="dave", role="operator")
    bobs = client_for(bob)
    first = bobs.post(f"/operators/handoffs/{handoff.pk}/claim", {"draft": "Hi <b>there</b>"})
    assert first.status_code == 302
    assert first["Location"] == f"/operators/handoffs/{handoff.pk}/"  # no conversation text
    second = client_for(dave).post(
        f"/operators/handoffs/{handoff.pk}/claim", HTTP_HX_REQUEST="true"
    )
    assert second.status_code == 200
    assert "Not claimed: bob claimed it first." in second.content.decode()
    page = bobs.get(first["Location"]).content.decode()
    assert "Hi &lt;b&gt;there&lt;/b&gt;</textarea>" in page


def test_it_keeps_the_draft_out_of_urls_until_the_reply_is_sent(bob):
    handoff = make_handoff()
    client = client_for(bob)
    draft = "Your order 4411 ships Monday"
    claimed = client.post(
        f"/operators/handoffs/{handoff.pk}/claim", {"draft": draft}, HTTP_HX_REQUEST="true"
    )
    assert claimed["HX-Redirect"] == f"/operators/handoffs/{handoff.pk}/"
    for _ in range(2):  # a reload keeps the draft
        assert f">{draft}</textarea>" in client.get(claimed["HX-Redirect"]).content.decode()
    sent = client.post(f"/operators/handoffs/{handoff.pk}/reply", {"content": draft})
    assert sent["Location"] == f"/operators/handoffs/{handoff.pk}/"
    page = client.get(sent["Location"]).content.decode()
    assert f">{draft}</textarea>" not in page and f">{handoff.suggested_reply}</textarea>" in page


def test_it_redirects_an_htmx_claim_to_the_claimed_view(bob):
    handoff = make_handoff()
    response = client_for(bob).post(
        f"/operators/handoffs/{handoff.pk}/claim", HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 204
    assert response["HX-Redirect"].startswith(f"/operators/handoffs/{handoff.pk}/")


def test_it_shows_the_claimed_view_with_memory_and_trace(bob, alice):
    handoff = make_handoff()
    session = handoff.session
    session.summary = "Earlier: asked about invoices."
    session.scratchpad = {"order": "A-17"}
    session.save()
    Memory.objects.create(
        agent_id=session.agent_id,
        user_key=session.external_user,
        text="Prefers email",
        content_hash="h1",
    )
    Memory.objects.create(
        agent_id=session.agent_id, user_key="someone-else", text="Not theirs", content_hash="h2"
    )
    handoff_claim(handoff_id=handoff.pk, user=bob)
    page = client_for(bob).get(f"/operators/handoffs/{handoff.pk}/").content.decode()
    assert "Earlier: asked about invoices." in page and "A-17" in page
    assert "Prefers email" in page and "Not theirs" not in page
    assert f"/runs/{handoff.run_id}/" in page
    assert "I want a human" in page and "Send reply" in page
    assert "Reassign" not in page
    assert (
        "Reassign" in client_for(alice).get(f"/operators/handoffs/{handoff.pk}/").content.decode()
    )


def test_it_keeps_other_operators_out_of_a_claimed_conversation(bob):
    handoff = make_handoff()
    dave = UserFactory(username="dave", role="operator")
    handoff_claim(handoff_id=handoff.pk, user=dave)
    response = client_for(bob).get(f"/operators/handoffs/{handoff.pk}/")
    assert response.status_code == 403
    assert "dave" in client_for(dave).get("/operators/").content.decode()
    assert f'data-claimed="{handoff.pk}"' not in client_for(bob).get("/operators/").content.decode()


def test_it_shows_admins_everyones_conversations(alice):
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=UserFactory(username="dave", role="operator"))
    page = client_for(alice).get("/operators/").content.decode()
    assert f'data-claimed="{handoff.pk}"' in page and "dave" in page


def test_it_replies_hands_back_and_closes_through_the_views(bob):
    handoff = make_handoff()
    client = client_for(bob)
    client.post(f"/operators/handoffs/{handoff.pk}/claim")
    response = client.post(
        f"/operators/handoffs/{handoff.pk}/reply", {"content": "On it."}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and "errorlist" not in response.content.decode()
    assert Message.objects.get(role=Role.OPERATOR).content == "On it."
    empty = client.post(
        f"/operators/handoffs/{handoff.pk}/reply", {"content": " "}, HTTP_HX_REQUEST="true"
    )
    assert "must not be empty" in empty.content.decode()
    assert client.post(f"/operators/handoffs/{handoff.pk}/hand-back").status_code == 302
    assert Run.objects.filter(session=handoff.session, status=RunStatus.QUEUED).count() == 1
    other = make_handoff()
    client.post(f"/operators/handoffs/{other.pk}/claim")
    client.post(f"/operators/handoffs/{other.pk}/close")
    other.session.refresh_from_db()
    assert other.session.status == "closed"
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"handoff.claim", "handoff.reply", "handoff.hand_back", "handoff.close"} <= actions


def test_it_approves_and_rejects_tool_calls_with_a_note(bob, charlie):
    session = SessionFactory()
    run = Run.objects.create(
        session=session,
        agent=session.agent,
        status=RunStatus.WAITING,
        wait_reason="approval needed for pay",
    )
    call = ToolCall.objects.create(
        run=run,
        step=1,
        call_id="c1",
        tool_name="pay",
        arguments={"amount": 5},
        status=ToolCallStatus.AWAITING_APPROVAL,
    )
    page = client_for(bob).get("/operators/").content.decode()
    assert f'data-approval="{call.pk}"' in page
    assert (
        client_for(charlie)
        .post(f"/operators/tool-calls/{call.pk}/decide", {"decision": "approve"})
        .status_code
        == 403
    )
    client_for(bob).post(
        f"/operators/tool-calls/{call.pk}/decide", {"decision": "reject", "note": "too much"}
    )
    call.refresh_from_db()
    assert (
        call.status == ToolCallStatus.REJECTED
        and call.decision_note == "too much"
        and call.decided_by == bob
    )
    assert AuditEntry.objects.get(action="tool.reject").detail["note"] == "too much"
    again = client_for(bob).post(
        f"/operators/tool-calls/{call.pk}/decide", {"decision": "approve"}, follow=True
    )
    assert "already rejected" in again.content.decode()


def test_it_shows_the_audit_log_to_admins_only(alice, bob):
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    assert client_for(bob).get("/operators/audit/").status_code == 403
    page = client_for(alice).get("/operators/audit/").content.decode()
    assert "handoff.claim" in page and "bob" in page
    filtered = (
        client_for(alice).get("/operators/audit/", {"action": "handoff.close"}).content.decode()
    )
    assert "No audit entries match" in filtered
    bad = client_for(alice).get("/operators/audit/", {"session": "nope"})
    assert bad.status_code == 400 and "not a session id" in bad.content.decode()
    by_session = client_for(alice).get("/operators/audit/", {"session": str(handoff.session_id)})
    assert 'data-audit="handoff.claim"' in by_session.content.decode()


def test_it_computes_handoff_figures_with_percentiles(db):
    agent = AgentFactory(slug="billing")
    now = timezone.now()
    for i, (pickup, resolve) in enumerate([(10, 100), (20, 200), (30, 300), (40, None)]):
        h = make_handoff(agent=agent)
        Handoff.objects.filter(pk=h.pk).update(
            created_at=now - timedelta(seconds=1000),
            claimed_at=now - timedelta(seconds=1000 - pickup),
            resolved_at=(now - timedelta(seconds=1000 - resolve)) if resolve else None,
            status=HandoffStatus.RESOLVED if resolve else HandoffStatus.CLAIMED,
            resolution=("closed" if i == 0 else "handed_back") if resolve else "",
        )
    for _ in range(4):  # runs that did not hand off
        s = SessionFactory(agent=agent)
        Run.objects.create(session=s, agent=agent, status=RunStatus.SUCCEEDED)
    figures = handoff_figures(since=now - timedelta(days=1))
    assert figures["pickup"]["p50"] == pytest.approx(25.0, abs=0.01)
    assert figures["pickup"]["p95"] == pytest.approx(38.5, abs=0.01)
    assert figures["resolve"]["p50"] == pytest.approx(200.0, abs=0.01)
    assert figures["resolve"]["count"] == 3
    assert figures["closed"] == 1 and figures["handed_back"] == 2
    assert figures["rates"] == [{"agent": "billing", "runs": 8, "handoffs": 4, "rate": 0.5}]


def test_it_streams_queue_events_and_operator_replies(bob):
    handoff = make_handoff()
    cookie = session_cookie(bob)

    async def main():
        from asgiref.sync import sync_to_async

        from agentops.operators.work.services import handoff_reply
        from tracing.platform.live import wait_sent

        ops = communicator("/ws/ops/", cookie)
        convo = communicator(f"/ws/sessions/{handoff.session_id}/", cookie)
        assert (await ops.connect())[0] and (await convo.connect())[0]
        snapshot = await convo.receive_json_from(timeout=5)
        assert snapshot["kind"] == "snapshot" and snapshot["session"]["status"] == "handed_off"

        def act():
            handoff_claim(handoff_id=handoff.pk, user=bob)
            handoff_reply(handoff=handoff, user=bob, content="Bob here <b>hi</b>")
            wait_sent()

        await sync_to_async(act)()
        got = await receive_until(
            ops, lambda ms: any(m.get("kind") == "handoff.claimed" for m in ms)
        )
        claimed = next(m for m in got if m["kind"] == "handoff.claimed")
        assert claimed["operator"] == "bob" and claimed["handoff_id"] == handoff.pk
        live = await receive_until(convo, lambda ms: any(m.get("kind") == "message" for m in ms))
        message = next(m for m in live if m["kind"] == "message")["message"]
        assert message["role"] == "operator" and message["author"] == "bob"
        assert message["content"] == "Bob here <b>hi</b>" and message["seq"] == 2
        assert any(m["kind"] == "handoff.claimed" for m in live)
        await ops.disconnect()
        await convo.disconnect()

    run_async(main)
