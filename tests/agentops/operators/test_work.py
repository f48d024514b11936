"""Working a conversation (services): private notes, transfer, snooze, labels, canned replies
with placeholders, the user's other conversations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agentops.conversation import conversation_serialise
from agentops.models import AuditEntry, Handoff, HandoffStatus, Message, Role, Session, Team
from agentops.operators.access import HandoffConflict
from agentops.operators.assignment.services import handoff_claim
from agentops.operators.canned.placeholders import placeholders_fill, placeholders_unknown
from agentops.operators.canned.selectors import canned_replies_for_handoff, canned_replies_usable
from agentops.operators.canned.services import canned_reply_delete, canned_reply_save
from agentops.operators.labels.services import session_label_add, session_label_remove
from agentops.operators.models import CannedReply, Label, PrivateNote
from agentops.operators.queue.selectors import handoffs_claimed, handoffs_open, handoffs_snoozed
from agentops.operators.queue.services import handoff_snooze, handoff_wake, handoffs_wake_due
from agentops.operators.work.selectors import session_notes, thread_with_notes, user_conversations
from agentops.operators.work.services import handoff_note_add, handoff_transfer
from agentops.runtime.services import session_post_message
from agentops.selectors import conversation_get
from agentops.widget.selectors import session_messages_after
from tests.agentops.operators.helpers import make_handoff
from tests.factories import SessionFactory, UserFactory
from tracing.platform.errors import NotFound

pytestmark = pytest.mark.django_db(transaction=True)


# -- private notes ---------------------------------------------------------------------------
def test_it_keeps_a_private_note_out_of_every_end_user_read(bob):
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    note = handoff_note_add(handoff=handoff, user=bob, content="Refund looks fraudulent")
    assert note.author == bob and note.session_id == handoff.session_id
    session = Session.objects.get(pk=handoff.session_id)
    conversation = conversation_get(session=session)
    assert "fraudulent" not in str(conversation_serialise(conversation))  # API + stream shape
    assert "fraudulent" not in str(session_messages_after(session=session, after=0))  # widget
    assert not Message.objects.filter(content__contains="fraudulent").exists()  # model context
    thread = thread_with_notes(items=conversation.items, notes=session_notes(session=session))
    assert [type(t).__name__ for t in thread][-1] == "NoteItem"  # operators see it in the thread
    assert AuditEntry.objects.filter(action="handoff.note", detail__note=note.pk).exists()


def test_it_refuses_an_empty_note_and_a_viewers_note(bob, charlie):
    handoff = make_handoff()
    with pytest.raises(ValueError, match="must not be empty"):
        handoff_note_add(handoff=handoff, user=bob, content="   ")
    with pytest.raises(PermissionError):
        handoff_note_add(handoff=handoff, user=charlie, content="hi")
    assert not PrivateNote.objects.exists()


# -- transfer --------------------------------------------------------------------------------
def test_it_transfers_to_an_operator_who_then_holds_it_with_the_note(bob):
    dave = UserFactory(username="dave", role="operator")
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    handoff_transfer(handoff=handoff, user=bob, to_operator="dave", note="VIP, be gentle")
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.CLAIMED and handoff.claimed_by == dave
    assert handoff.session.operator == dave
    assert [h.pk for h in handoffs_claimed(user=dave)] == [handoff.pk]
    assert list(handoffs_claimed(user=bob)) == []
    note = PrivateNote.objects.get()
    assert note.transfer_to == "operator dave" and note.content == "VIP, be gentle"
    entry = AuditEntry.objects.get(action="handoff.transfer")
    assert entry.actor == bob and entry.detail["to"] == "operator dave"
    assert entry.detail["previous_operator"] == "bob"


def test_it_transfers_to_a_team_back_into_the_open_queue(bob):
    billing = Team.objects.create(slug="billing", name="Billing")
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    handoff_transfer(handoff=handoff, user=bob, to_team="billing", note="")
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.OPEN and handoff.claimed_by is None
    assert handoff.team == billing and handoff.session.operator is None
    assert [h.pk for h in handoffs_open()] == [handoff.pk]
    assert PrivateNote.objects.get().transfer_to == "team billing"


def test_it_refuses_a_transfer_by_someone_who_does_not_hold_it_and_to_nobody(bob):
    dave = UserFactory(username="dave", role="operator")
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    with pytest.raises(HandoffConflict, match="claimed by bob"):
        handoff_transfer(handoff=handoff, user=dave, to_operator="dave")
    with pytest.raises(ValueError, match="either an operator or a team"):
        handoff_transfer(handoff=handoff, user=bob)
    with pytest.raises(NotFound, match="not an active operator"):
        handoff_transfer(handoff=handoff, user=bob, to_operator="nobody")
    with pytest.raises(NotFound, match="no team"):
        handoff_transfer(handoff=handoff, user=bob, to_team="nope")
    handoff.refresh_from_db()
    assert handoff.claimed_by == bob and not PrivateNote.objects.exists()


# -- snooze ----------------------------------------------------------------------------------
def test_it_hides_a_snoozed_handoff_until_the_sweep_finds_its_time_come(bob):
    handoff = make_handoff()
    until = timezone.now() + timedelta(hours=1)
    handoff_snooze(handoff=handoff, user=bob, until=until)
    assert list(handoffs_open()) == []
    assert [h.pk for h in handoffs_snoozed(user=bob)] == [handoff.pk]
    assert handoffs_wake_due(now=until - timedelta(seconds=1)) == 0
    assert handoffs_wake_due(now=until) == 1
    assert [h.pk for h in handoffs_open()] == [handoff.pk]
    woken = AuditEntry.objects.get(action="handoff.wake")
    assert woken.actor is None and woken.detail["why"] == "the snooze ended"


def test_it_wakes_due_snoozes_past_any_number_of_closed_ones(bob):
    past = timezone.now() - timedelta(hours=1)
    agent = SessionFactory().agent
    sessions = Session.objects.bulk_create(Session(agent=agent) for _ in range(501))
    Handoff.objects.bulk_create(
        Handoff(
            session=s,
            reason="flood",
            status=HandoffStatus.RESOLVED,
            snoozed_at=past,
            snoozed_until=past,
        )
        for s in sessions
    )
    due = make_handoff()
    Handoff.objects.filter(pk=due.pk).update(snoozed_at=past, snoozed_until=past)
    assert handoffs_wake_due() == 1
    assert Handoff.objects.get(pk=due.pk).snoozed_at is None


def test_it_wakes_a_snoozed_handoff_when_the_user_writes(bob):
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    handoff_snooze(handoff=handoff, user=bob, until=None)  # until the user writes
    assert list(handoffs_claimed(user=bob)) == []
    assert handoffs_wake_due(now=timezone.now() + timedelta(days=365)) == 0
    session_post_message(session=handoff.session, content="any news?")
    assert [h.pk for h in handoffs_claimed(user=bob)] == [handoff.pk]
    assert AuditEntry.objects.get(action="handoff.wake").detail["why"] == "the user wrote"


def test_it_refuses_a_snooze_in_the_past_or_of_someone_elses_handoff(bob):
    dave = UserFactory(username="dave", role="operator")
    handoff = make_handoff()
    with pytest.raises(ValueError, match="future"):
        handoff_snooze(handoff=handoff, user=bob, until=timezone.now() - timedelta(minutes=1))
    handoff_claim(handoff_id=handoff.pk, user=bob)
    with pytest.raises(HandoffConflict):
        handoff_snooze(handoff=handoff, user=dave, until=None)
    with pytest.raises(HandoffConflict, match="not snoozed"):
        handoff_wake(handoff=handoff, user=bob)
    assert Handoff.objects.get().snoozed_at is None


# -- labels ----------------------------------------------------------------------------------
def test_it_creates_labels_on_the_fly_and_filters_the_queue_by_them(bob):
    first, second = make_handoff(), make_handoff()
    label = session_label_add(session=first.session, name="  Billing ", colour="red", actor=bob)
    again = session_label_add(session=second.session, name="billing", actor=bob)
    assert again.pk == label.pk and Label.objects.get().name == "Billing"
    assert label.colour == "red"
    assert [h.pk for h in handoffs_open(label="BILLING")] == [first.pk, second.pk]
    session_label_remove(session=second.session, label=label, actor=bob)
    assert [h.pk for h in handoffs_open(label="billing")] == [first.pk]
    assert len(handoffs_open()) == 2
    assert AuditEntry.objects.filter(action="session.label").count() == 2
    with pytest.raises(ValueError, match="colour"):
        session_label_add(session=first.session, name="x", colour="#123456", actor=bob)
    with pytest.raises(ValueError, match="name"):
        session_label_add(session=first.session, name=" ", actor=bob)


# -- canned replies --------------------------------------------------------------------------
def test_it_fills_placeholders_and_knows_the_unknown_ones():
    text = "Hi {{ user.name | there }}, {{operator.name}} here for {{ agent.name }}. {{ nope }}"
    assert placeholders_unknown(text=text) == ["nope"]
    values = {"user.name": "", "operator.name": "Bob", "agent.name": "Shop"}
    assert placeholders_fill(text=text, values=values) == (
        "Hi there, Bob here for Shop. {{ nope }}"
    )


def test_it_refuses_an_unknown_placeholder_on_save(bob):
    with pytest.raises(ValueError, match=r"content: unknown placeholder \{\{ user\.email \}\}"):
        canned_reply_save(
            reply=None,
            shortcut="hi",
            title="Hi",
            content="Hello {{ user.email }}",
            scope="personal",
            actor=bob,
        )
    assert not CannedReply.objects.exists()


def test_it_scopes_canned_replies_personal_team_and_everyone(alice, bob):
    dave = UserFactory(username="dave", role="operator")
    billing = Team.objects.create(slug="billing", name="Billing")
    billing.members.add(bob)
    mine = canned_reply_save(
        reply=None, shortcut="hi", title="Hi", content="Hi!", scope="personal", actor=bob
    )
    team = canned_reply_save(
        reply=None,
        shortcut="refund",
        title="Refund",
        content="Refunds take 5 days.",
        scope="team:billing",
        actor=bob,
    )
    every = canned_reply_save(
        reply=None, shortcut="bye", title="Bye", content="Bye", scope="everyone", actor=alice
    )
    with pytest.raises(ValueError, match="only admins"):
        canned_reply_save(
            reply=None, shortcut="x", title="x", content="x", scope="everyone", actor=bob
        )
    with pytest.raises(ValueError, match="not a member of team billing"):
        canned_reply_save(
            reply=None, shortcut="x", title="x", content="x", scope="team:billing", actor=dave
        )
    with pytest.raises(ValueError, match="taken"):
        canned_reply_save(
            reply=None, shortcut="hi", title="x", content="x", scope="personal", actor=bob
        )
    assert set(canned_replies_usable(user=bob)) == {mine, team, every}
    assert set(canned_replies_usable(user=dave)) == {every}
    # Answering a billing handoff, dave may use the team's replies too.
    assert set(canned_replies_usable(user=dave, team=billing)) == {team, every}
    with pytest.raises(PermissionError):
        canned_reply_delete(reply=mine, actor=alice)  # personal: the owner's alone
    with pytest.raises(PermissionError):
        canned_reply_save(
            reply=team, shortcut="refund", title="x", content="x", scope="team:billing", actor=dave
        )
    canned_reply_delete(reply=team, actor=alice)
    assert not CannedReply.objects.filter(shortcut="refund").exists()
    assert AuditEntry.objects.filter(action="canned_reply.deleted").count() == 1


def test_it_gives_the_reply_box_replies_with_the_conversation_filled_in(bob):
    bob.first_name = "Bob"
    bob.save()
    handoff = make_handoff()
    Session.objects.filter(pk=handoff.session_id).update(external_user="user:Ada <b>")
    handoff.refresh_from_db()
    canned_reply_save(
        reply=None,
        shortcut="hello",
        title="Hello",
        content="Hello {{ user.name }}, I am {{ operator.name }} from {{ team.name | support }}.",
        scope="personal",
        actor=bob,
    )
    (entry,) = canned_replies_for_handoff(handoff=handoff, user=bob)
    # Plain text: the box inserts it as text and pages escape it where they render it.
    assert entry["text"] == "Hello Ada <b>, I am Bob from support."


# -- the user's other conversations ----------------------------------------------------------
def test_it_lists_the_users_other_conversations_with_any_agent(bob):
    handoff = make_handoff()
    user = handoff.session.external_user
    older = SessionFactory(external_user=user, title="Earlier order")
    Message.objects.create(session=older, seq=1, role=Role.USER, content="where is it")
    SessionFactory(external_user="someone-else")
    (row,) = user_conversations(session=handoff.session)
    assert row.pk == older.pk and row.message_count == 1 and row.handoff_count == 0
    assert user_conversations(session=SessionFactory(external_user="")) == []
