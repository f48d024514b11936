"""One fan-out per state change (agentops.events.event_record): a change writes exactly one
audit row, sends one live event to each audience and makes one webhook delivery, all seen
only once it commits, and none of it when it rolls back. The webhooks and the inbox hear it
through agentops.hooks, which the core and the runtime announce to without knowing them."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from agentops.events import event_record
from agentops.hooks import HOOKS, Event, event_announce, event_subscribe
from agentops.models import AuditEntry, Message, Role, Team
from agentops.operators.assignment.services import handoff_claim
from agentops.operators.work.services import handoff_close
from agentops.runtime.checkpoint import messages_append
from agentops.runtime.services import handoff_open
from agentops.webhooks.models import WebhookDelivery
from agentops.webhooks.services import webhook_endpoint_create
from tests.agentops.operators.helpers import make_handoff
from tests.factories import SessionFactory, UserFactory
from tracing.platform.live import OPS_GROUP, capture_live_events, session_group

pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    pass


def elsewhere(count: Callable[[], int]) -> int:
    """`count()` as another connection sees it (what is committed)."""
    seen: list[int] = []

    def read() -> None:
        try:
            seen.append(count())
        finally:
            connection.close()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    return seen[0]


def deliveries(type_: str) -> int:
    return WebhookDelivery.objects.filter(event__type=type_).count()


def audits(action: str) -> int:
    return AuditEntry.objects.filter(action=action).count()


def test_a_claim_is_one_audit_row_one_live_event_and_one_delivery_after_commit():
    webhook_endpoint_create(url="https://hooks.example.com/a", event_types=["handoff.claimed"])
    handoff = make_handoff()
    bob = UserFactory(username="bob", role="operator")
    with capture_live_events() as sent:
        with transaction.atomic():
            handoff_claim(handoff_id=handoff.pk, user=bob)
            assert sent == []  # nothing leaves before the commit
            assert elsewhere(lambda: audits("handoff.claim")) == 0
            assert elsewhere(lambda: deliveries("handoff.claimed")) == 0
    claimed = [(group, e) for group, e in sent if e["kind"] == "handoff.claimed"]
    assert [group for group, _ in claimed] == [session_group(handoff.session_id), OPS_GROUP]
    assert all(e["operator"] == "bob" and e["handoff_id"] == handoff.pk for _, e in claimed)
    assert audits("handoff.claim") == 1
    assert deliveries("handoff.claimed") == 1
    assert len(sent) == 2


def test_a_change_rolled_back_leaves_no_audit_row_no_live_event_and_no_delivery():
    webhook_endpoint_create(url="https://hooks.example.com/a", event_types=["handoff.closed"])
    handoff = make_handoff()
    bob = UserFactory(username="bob", role="operator")
    handoff_claim(handoff_id=handoff.pk, user=bob)
    with capture_live_events() as sent, pytest.raises(Rollback), transaction.atomic():
        handoff_close(handoff=handoff, user=bob)
        raise Rollback
    assert sent == []
    assert audits("handoff.close") == 0
    assert deliveries("handoff.closed") == 0
    with capture_live_events() as sent:
        handoff_close(handoff=handoff, user=bob)
    assert [e["kind"] for _, e in sent] == ["handoff.resolved", "handoff.resolved"]
    assert audits("handoff.close") == 1
    assert deliveries("handoff.closed") == 1


def test_the_runtime_records_a_message_once_for_its_viewers_and_the_webhooks():
    webhook_endpoint_create(url="https://hooks.example.com/a", event_types=["message.created"])
    session = SessionFactory()
    audited = AuditEntry.objects.count()
    with capture_live_events() as sent, transaction.atomic():
        messages_append(
            session_id=session.pk, messages=[Message(role=Role.ASSISTANT, content="Hello")]
        )
        assert elsewhere(lambda: deliveries("message.created")) == 0
    assert [(group, e["kind"]) for group, e in sent] == [(session_group(session.pk), "message")]
    assert deliveries("message.created") == 1
    assert AuditEntry.objects.count() == audited  # a message is no audited act


def test_the_inbox_hears_a_handoff_opened_and_assigns_it_after_the_commit():
    """The runtime no longer calls the inbox: handoff.created reaches it through the hooks."""
    from agentops.models import AssignmentMode, HandoffStatus
    from agentops.operators.presence.services import operator_presence_set

    team = Team.objects.create(slug="billing", name="Billing")
    Team.objects.filter(pk=team.pk).update(assignment_mode=AssignmentMode.ROUND_ROBIN)
    carol = UserFactory(username="carol", role="operator")
    carol.teams.add(team)
    operator_presence_set(user=carol, presence="online")
    session = SessionFactory()
    with transaction.atomic():
        handoff = handoff_open(
            session_id=session.pk,
            agent_slug=session.agent.slug,
            run_id=None,
            reason="The user asked for a human",
            team=team,
        )
        handoff.refresh_from_db()
        assert handoff.status == HandoffStatus.OPEN  # not before the commit
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.CLAIMED and handoff.claimed_by == carol


def test_a_subscriber_hears_each_kind_it_subscribed_to_in_the_transaction():
    heard: list[Event] = []
    event_subscribe(kinds=["labels.changed"], handler=heard.append)
    try:
        with transaction.atomic():
            event_record(kind="labels.changed", data={"why": "test"})
            assert [e.data["why"] for e in heard] == ["test"]  # at once, inside the transaction
        event_record(kind="operator.presence", data={"operator": "x", "presence": "online"})
        assert len(heard) == 1
    finally:
        from agentops import hooks

        hooks._subscribers["labels.changed"].remove(heard.append)


def test_an_unknown_kind_is_refused():
    assert "handoff.claimed" in HOOKS
    with pytest.raises(ValueError, match="no hook named"):
        event_announce(Event(kind="handoff.clamed"))
    with pytest.raises(ValueError, match="no hook named"):
        event_subscribe(kinds=["run.finished"], handler=lambda event: None)
