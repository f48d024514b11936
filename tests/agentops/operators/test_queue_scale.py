"""The queue with hundreds of handoffs: filters, full-text search, pages, bulk close, and a
number of queries that does not grow with the page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agentops.models import (
    AuditEntry,
    Handoff,
    HandoffStatus,
    Message,
    Role,
    Session,
    SessionStatus,
    Team,
)
from agentops.operators.assignment.services import handoff_claim
from agentops.operators.labels.services import session_label_add
from agentops.operators.queue.selectors import QUEUE_PAGE_SIZE, handoffs_queue
from agentops.operators.queue.services import handoff_snooze
from agentops.operators.work.services import handoffs_bulk_close
from agentops.runtime.checkpoint import messages_append
from tests.agentops.operators.helpers import make_handoff
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def listed(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-handoff="(\d+)"', page)]


def test_it_filters_by_team_status_and_waiting_time(alice, bob):
    billing = Team.objects.create(slug="billing", name="Billing")
    teamed = make_handoff(team=billing)
    plain = make_handoff()
    old = make_handoff()
    Handoff.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))
    claimed = make_handoff()
    handoff_claim(handoff_id=claimed.pk, user=bob)

    def ids(**filters):
        return {h.pk for h in handoffs_queue(user=alice, **filters)}

    assert ids() == {teamed.pk, plain.pk, old.pk}
    assert ids(team="billing") == {teamed.pk}
    assert ids(team="none") == {plain.pk, old.pk}
    assert ids(waiting="1h") == {old.pk}
    assert ids(status="claimed") == {claimed.pk}
    assert ids(status="any") == {teamed.pk, plain.pk, old.pk, claimed.pk}
    dave = UserFactory(username="dave", role="operator")
    assert {h.pk for h in handoffs_queue(user=dave, status="claimed")} == set()  # bob's


def test_it_refuses_unknown_filters_naming_them(alice):
    with pytest.raises(ValueError, match="status"):
        handoffs_queue(user=alice, status="lost")
    answer = client_for(alice).get("/operators/?waiting=forever")
    assert answer.status_code == 400
    assert "waiting: choose one of" in answer.content.decode()


def test_it_filters_by_label_and_leaves_snoozed_handoffs_out(alice, bob):
    vip, plain, snoozed = make_handoff(), make_handoff(), make_handoff()
    session_label_add(session=vip.session, name="VIP", actor=bob)
    handoff_snooze(handoff=snoozed, user=bob, until=None)
    assert list(handoffs_queue(user=alice, label="vip")) == [vip]
    assert set(handoffs_queue(user=alice)) == {vip, plain}
    page = client_for(alice).get("/operators/?label=VIP").content.decode()
    assert f"/operators/handoffs/{vip.pk}/" in page
    assert f"/operators/handoffs/{plain.pk}/" not in page


def test_it_searches_message_text_end_user_and_title(alice):
    refund = make_handoff()
    messages_append(
        session_id=refund.session_id,
        messages=[Message(role=Role.USER, content="My order 4417 needs a refund, please")],
    )
    named = make_handoff()
    Session.objects.filter(pk=named.session_id).update(external_user="grace@example.com")
    titled = make_handoff()
    Session.objects.filter(pk=titled.session_id).update(title="Broken invoice PDF")
    make_handoff()

    def found(q: str) -> set[int]:
        return {h.pk for h in handoffs_queue(user=alice, q=q)}

    assert found("refund") == {refund.pk}
    assert found("REFUN") == {refund.pk}  # any case, word prefixes
    assert found("order 4417") == {refund.pk}
    assert found("grace") == {named.pk}
    assert found("invoice") == {titled.pk}
    assert found("nothing-like-this") == set()
    assert found("'&!:*") == set()  # query syntax is not passed through
    page = client_for(alice).get("/operators/", {"q": "refund"}).content.decode()
    assert listed(page) == [refund.pk]


def test_it_pages_hundreds_of_handoffs_in_queue_order(alice):
    made = [make_handoff(priority=1 + i % 2) for i in range(2 * QUEUE_PAGE_SIZE + 10)]
    expected = [h.pk for h in sorted(made, key=lambda h: (h.priority, h.created_at))]
    client = client_for(alice)
    pages = [listed(client.get("/operators/", {"page": n}).content.decode()) for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [QUEUE_PAGE_SIZE, QUEUE_PAGE_SIZE, 10]
    assert pages[0] + pages[1] + pages[2] == expected
    second = client.get("/operators/", {"page": 2}).content.decode()
    assert "page 2 of 3" in second and 'rel="next"' in second and 'rel="prev"' in second


def test_it_keeps_the_number_of_queries_constant_with_the_page_size(alice, bob):
    billing = Team.objects.create(slug="billing", name="Billing")

    def queries(client: Client) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/operators/", {"status": "any"}).status_code == 200
        return len(captured)

    for user in (alice, bob):
        Handoff.objects.all().delete()
        make_handoff(team=billing)
        claimed = make_handoff()
        handoff_claim(handoff_id=claimed.pk, user=bob)
        client = client_for(user)
        few = queries(client)
        for i in range(QUEUE_PAGE_SIZE):
            h = make_handoff(team=billing if i % 2 else None)
            if i % 5 == 0:
                handoff_claim(handoff_id=h.pk, user=bob)
        assert queries(client) == few


def test_it_bulk_closes_with_an_audit_entry_each(bob):
    opened = [make_handoff() for _ in range(3)]
    mine = make_handoff()
    handoff_claim(handoff_id=mine.pk, user=bob)
    dave = UserFactory(username="dave", role="operator")
    theirs = make_handoff()
    handoff_claim(handoff_id=theirs.pk, user=dave)
    done = make_handoff(status=HandoffStatus.RESOLVED)
    from tracing.platform.live import capture_live_events

    ids = [h.pk for h in [*opened, mine, theirs, done]] + [999999]
    with capture_live_events() as events:
        closed, skipped = handoffs_bulk_close(handoff_ids=ids, user=bob)
    assert closed == [h.pk for h in [*opened, mine]]
    assert skipped == [
        "handoff 999999: no such handoff",
        f"handoff {theirs.pk}: claimed by dave",
        f"handoff {done.pk}: already resolved",
    ]
    for pk in closed:
        handoff = Handoff.objects.select_related("session").get(pk=pk)
        assert handoff.status == HandoffStatus.RESOLVED and handoff.resolution == "closed"
        assert handoff.session.status == SessionStatus.CLOSED
    entries = AuditEntry.objects.filter(action="handoff.close", actor=bob)
    assert sorted(int(e.target.split()[1]) for e in entries) == sorted(closed)
    assert all(e.detail["bulk"] for e in entries)
    resolved = [
        e["handoff_id"] for g, e in events if e["kind"] == "handoff.resolved" and g == "ops"
    ]
    assert sorted(resolved) == sorted(closed)
    assert Handoff.objects.get(pk=theirs.pk).status == HandoffStatus.CLAIMED


def test_it_bulk_closes_from_the_queue_page_and_returns_to_the_same_list(alice, charlie):
    handoffs = [make_handoff() for _ in range(4)]
    client = client_for(alice)
    answer = client.post(
        "/operators/handoffs/bulk-close",
        {"handoff": [h.pk for h in handoffs[:3]], "next": "/operators/?status=open&page=1"},
    )
    assert answer.status_code == 302 and answer["Location"] == "/operators/?status=open&page=1"
    page = client.get(answer["Location"]).content.decode()
    assert "Closed 3 conversations." in page and listed(page) == [handoffs[3].pk]
    nothing = client.post("/operators/handoffs/bulk-close", {"next": "https://elsewhere/"})
    assert nothing["Location"] == "/operators/"
    assert "select at least one handoff" in client.get("/operators/").content.decode()
    refused = client_for(charlie).post("/operators/handoffs/bulk-close", {"handoff": [1]})
    assert refused.status_code == 403
