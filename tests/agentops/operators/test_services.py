"""Takeover writes: atomic claim under real concurrency, reply, hand back, close, reassign."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from agentops.models import (
    AuditEntry,
    Handoff,
    HandoffStatus,
    Message,
    Role,
    Run,
    RunStatus,
    SessionStatus,
)
from agentops.operators.access import HandoffConflict
from agentops.operators.assignment.services import handoff_claim, handoff_reassign
from agentops.operators.work.services import handoff_close, handoff_hand_back, handoff_reply
from tests.agentops.operators.helpers import make_handoff
from tests.factories import UserFactory
from tests.kit import until

pytestmark = pytest.mark.django_db(transaction=True)


def _in_thread(target):
    """Run `target` in a thread with its own database connection; return its outcome."""
    outcome: dict = {}

    def body():
        try:
            outcome["value"] = target()
        except Exception as exc:  # the outcome is inspected by the test
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=body)
    thread.start()
    return thread, outcome


def test_it_lets_exactly_one_of_many_racing_operators_claim(bob):
    handoff = make_handoff()
    operators = [UserFactory(username=f"op{i}", role="operator") for i in range(6)]
    barrier = threading.Barrier(len(operators))

    def claimer(user):
        def go():
            barrier.wait()
            return handoff_claim(handoff_id=handoff.pk, user=user)

        return go

    started = [_in_thread(claimer(u)) for u in operators]
    for thread, _ in started:
        thread.join(20)
    outcomes = [o for _, o in started]
    winners = [o["value"] for o in outcomes if "value" in o]
    losers = [o["error"] for o in outcomes if "error" in o]
    assert len(winners) == 1 and len(losers) == 5
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.CLAIMED
    winner = handoff.claimed_by.username
    for error in losers:
        assert isinstance(error, HandoffConflict)
        assert f"{winner} claimed it first" in str(error)
    assert AuditEntry.objects.filter(action="handoff.claim").count() == 1


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else fixed for the transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


def test_it_makes_the_second_connection_wait_for_the_first_and_lose(bob):
    """Two connections: the first holds its claim uncommitted; the second's UPDATE waits on the
    row lock, re-checks `status = 'open'` after the commit and matches nothing."""
    handoff = make_handoff()
    dave = UserFactory(username="dave", role="operator")
    claimed = threading.Event()

    def first():
        with transaction.atomic():
            handoff_claim(handoff_id=handoff.pk, user=bob)
            claimed.set()
            # The second claim is blocked on our row lock.
            until(waiting_on_a_lock, seconds=10, message="the second claim never waited")
        return "committed"

    def second():
        claimed.wait(10)
        return handoff_claim(handoff_id=handoff.pk, user=dave)

    t1, o1 = _in_thread(first)
    t2, o2 = _in_thread(second)
    t1.join(20)
    t2.join(20)
    assert o1 == {"value": "committed"}
    assert isinstance(o2.get("error"), HandoffConflict)
    assert "bob claimed it first" in str(o2["error"])
    handoff.refresh_from_db()
    assert handoff.claimed_by == bob


def test_it_records_the_operator_on_the_session_when_claimed(bob):
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    handoff.session.refresh_from_db()
    assert handoff.session.operator == bob
    entry = AuditEntry.objects.get(action="handoff.claim")
    assert entry.actor == bob and entry.session_id == handoff.session_id


def test_it_stores_an_operator_reply_as_an_operator_message(bob):
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    message = handoff_reply(handoff=handoff, user=bob, content="Hi, Bob here.")
    assert message.role == Role.OPERATOR and message.author == bob
    assert message.seq == 2
    assert AuditEntry.objects.filter(action="handoff.reply", actor=bob).exists()


def test_it_refuses_replies_from_someone_who_did_not_claim(bob):
    handoff = make_handoff()
    dave = UserFactory(username="dave", role="operator")
    with pytest.raises(HandoffConflict, match="not claimed"):
        handoff_reply(handoff=handoff, user=bob, content="too early")
    handoff_claim(handoff_id=handoff.pk, user=dave)
    with pytest.raises(HandoffConflict, match="claimed by dave"):
        handoff_reply(handoff=handoff, user=bob, content="not mine")
    with pytest.raises(ValueError, match="empty"):
        handoff_reply(handoff=handoff, user=dave, content="   ")
    assert not Message.objects.filter(role=Role.OPERATOR).exists()


def test_it_hands_back_and_starts_a_run_on_the_conversation(bob):
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    handoff_reply(handoff=handoff, user=bob, content="Fixed it for you.")
    run = handoff_hand_back(handoff=handoff, user=bob)
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.RESOLVED and handoff.resolution == "handed_back"
    assert handoff.resolved_at is not None
    session = handoff.session
    session.refresh_from_db()
    assert session.status == SessionStatus.ACTIVE and session.operator is None
    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED
    assert AuditEntry.objects.filter(action="handoff.hand_back").exists()
    with pytest.raises(HandoffConflict):
        handoff_hand_back(handoff=handoff, user=bob)


def test_it_closes_the_session(bob):
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    handoff_close(handoff=handoff, user=bob)
    handoff.refresh_from_db()
    handoff.session.refresh_from_db()
    assert handoff.resolution == "closed"
    assert handoff.session.status == SessionStatus.CLOSED
    assert not Run.objects.filter(session=handoff.session, status=RunStatus.QUEUED).exists()


def test_it_lets_only_admins_reassign(alice, bob):
    handoff = make_handoff()
    dave = UserFactory(username="dave", role="operator")
    handoff_claim(handoff_id=handoff.pk, user=bob)
    with pytest.raises(PermissionError):
        handoff_reassign(handoff=handoff, user=bob, to_username="dave")
    with pytest.raises(ValueError, match="not an active operator"):
        handoff_reassign(handoff=handoff, user=alice, to_username="nobody-here")
    handoff_reassign(handoff=handoff, user=alice, to_username="dave")
    handoff.refresh_from_db()
    assert handoff.claimed_by == dave
    entry = AuditEntry.objects.get(action="handoff.reassign")
    assert entry.detail == {"to": "dave", "previous": "bob"}
    # The new owner can reply; the previous one cannot.
    handoff_reply(handoff=handoff, user=dave, content="Dave here.")
    with pytest.raises(HandoffConflict):
        handoff_reply(handoff=handoff, user=bob, content="still me?")
    assert Handoff.objects.get(pk=handoff.pk).status == HandoffStatus.CLAIMED
