"""Taking over a conversation the agent never handed off, without a worker: at once when no
run is in flight (or only a queued or waiting one), and race-safe against another operator
and against the agent's own handoff. The mid-run takeover with a real worker is in
tests/agentops/runtime/test_takeover.py."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
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
    SessionStatus,
)
from agentops.operators.access import HandoffConflict
from agentops.operators.takeover.selectors import conversations_live
from agentops.operators.takeover.services import session_take_over
from agentops.operators.work.services import handoff_hand_back
from agentops.runtime.checkpoint import messages_append
from tests.factories import SessionFactory, UserFactory


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def say(session, *lines: tuple[str, str], ago: float = 0) -> None:
    messages_append(
        session_id=session.pk, messages=[Message(role=role, content=text) for role, text in lines]
    )
    if ago:
        Message.objects.filter(session=session).update(
            created_at=timezone.now() - timedelta(seconds=ago)
        )


@pytest.mark.django_db
def test_it_takes_over_at_once_when_no_run_is_in_flight(bob):
    session = SessionFactory(external_user="erin")
    say(session, ("user", "hi"), ("assistant", "Hello!"))
    outcome = session_take_over(session_id=session.pk, user=bob)
    handoff = outcome.handoff
    assert outcome.run is None and handoff is not None
    assert handoff.status == HandoffStatus.CLAIMED and handoff.claimed_by == bob
    assert handoff.reason == "taken over by bob" and handoff.taken_over
    session.refresh_from_db()
    assert session.status == SessionStatus.HANDED_OFF and session.operator == bob
    assert AuditEntry.objects.filter(action="handoff.take_over", actor=bob).exists()
    # Asking again is no second handoff: it is already theirs.
    assert session_take_over(session_id=session.pk, user=bob).handoff.pk == handoff.pk
    assert Handoff.objects.filter(session=session).count() == 1


@pytest.mark.django_db
def test_it_ends_a_queued_run_no_worker_holds_and_takes_over_at_once(bob, dev_agent):
    from agentops.runtime.services import session_create, session_post_message

    session = session_create(agent=dev_agent, external_user="erin")
    run = session_post_message(session=session, content="help")  # queued: no job sent in a test
    outcome = session_take_over(session_id=session.pk, user=bob)
    run.refresh_from_db()
    assert run.status == RunStatus.HANDED_OFF and run.wait_reason == "taken over by bob"
    assert outcome.handoff.run_id == run.pk and outcome.handoff.claimed_by == bob
    # What the user wrote waits for the operator; hand-back gives it to the agent again.
    handoff = outcome.handoff
    Handoff.objects.filter(pk=handoff.pk).update(summary="s")
    resumed = handoff_hand_back(handoff=handoff, user=bob)
    assert resumed.status == RunStatus.QUEUED


@pytest.mark.django_db
def test_it_flags_a_running_run_and_refuses_a_second_operator(bob):
    dave = UserFactory(username="dave", role="operator")
    session = SessionFactory()
    run = Run.objects.create(session=session, agent=session.agent, status=RunStatus.RUNNING)
    assert session_take_over(session_id=session.pk, user=bob).run.pk == run.pk
    run.refresh_from_db()
    assert run.takeover_by == bob and run.status == RunStatus.RUNNING
    with pytest.raises(HandoffConflict, match="bob is taking this conversation over"):
        session_take_over(session_id=session.pk, user=dave)
    assert session_take_over(session_id=session.pk, user=bob).run.pk == run.pk  # idempotent


@pytest.mark.django_db
def test_it_claims_the_agents_own_handoff_and_refuses_a_taken_one(bob):
    from tests.agentops.operators.helpers import make_handoff

    dave = UserFactory(username="dave", role="operator")
    handoff = make_handoff(reason="The user asked for a human")
    outcome = session_take_over(session_id=handoff.session_id, user=bob)
    assert outcome.handoff.pk == handoff.pk and outcome.handoff.claimed_by == bob
    with pytest.raises(HandoffConflict, match="bob has this conversation already"):
        session_take_over(session_id=handoff.session_id, user=dave)
    closed = SessionFactory(status=SessionStatus.CLOSED)
    with pytest.raises(HandoffConflict, match="closed"):
        session_take_over(session_id=closed.pk, user=bob)


@pytest.mark.django_db(transaction=True)
def test_it_lets_one_of_many_racing_operators_take_over():
    operators = [UserFactory(username=f"op{i}", role="operator") for i in range(6)]
    for _ in range(5):
        session = SessionFactory()
        say(session, ("user", "hi"))
        barrier = threading.Barrier(len(operators))
        won, lost = [], []

        def attempt(user, session=session, barrier=barrier, won=won, lost=lost) -> None:
            try:
                barrier.wait()
                won.append(session_take_over(session_id=session.pk, user=user).handoff)
            except HandoffConflict:
                lost.append(user)
            finally:
                connection.close()

        threads = [threading.Thread(target=attempt, args=(u,)) for u in operators]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1 and len(lost) == len(operators) - 1
        assert Handoff.objects.filter(session=session).count() == 1


@pytest.mark.django_db
def test_it_shows_live_conversations_with_their_signals(charlie, bob):
    calm = SessionFactory(external_user="calm")
    say(calm, ("user", "hi"), ("assistant", "Hello!"))
    stuck = SessionFactory(external_user="stuck")
    run = Run.objects.create(session=stuck, agent=stuck.agent, status=RunStatus.RUNNING)
    messages_append(
        session_id=stuck.pk,
        messages=[
            Message(role=Role.USER, content="Where is my order?"),
            Message(role=Role.TOOL, content="Error: the tool orders failed", run=run),
            Message(role=Role.TOOL, content="Error: the tool orders failed", run=run),
            Message(role=Role.USER, content="where is my order??"),
        ],
    )
    Message.objects.filter(session=stuck).update(created_at=timezone.now() - timedelta(seconds=90))
    SessionFactory(status=SessionStatus.HANDED_OFF)  # with a human already: not listed

    rows = conversations_live(now=timezone.now())
    assert [c.session for c in rows] == [stuck, calm]  # signals first
    assert rows[0].signals == ["2 tool errors", "user asked twice", "user waiting 1 min 30 s"]
    assert rows[0].state == "running" and rows[1].signals == [] and rows[1].state == "idle"

    page = client_for(charlie).get("/operators/live/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "user asked twice" in body and "where is my order??" in body
    assert "data-take-over" not in body  # viewers watch; operators take over
    assert "data-take-over" in client_for(bob).get("/operators/live/").content.decode()


@pytest.mark.django_db
def test_it_takes_over_from_the_live_view_run_page_and_failures_page(bob, charlie):
    session = SessionFactory()
    say(session, ("user", "hi"))
    run = Run.objects.create(
        session=session, agent=session.agent, status=RunStatus.FAILED, error_class="bug"
    )
    operator = client_for(bob)
    for page in (f"/runs/{run.pk}/", "/failures/?window=all", f"/operators/live/{session.pk}/"):
        body = operator.get(page).content.decode()
        assert f'data-take-over="{session.pk}"' in body, page
    assert client_for(charlie).post(f"/operators/live/{session.pk}/take-over").status_code == 403
    response = operator.post(f"/operators/live/{session.pk}/take-over")
    handoff = Handoff.objects.get(session=session)
    assert response.status_code == 302 and response.url == f"/operators/handoffs/{handoff.pk}/"
    assert handoff.claimed_by == bob and handoff.reason == "taken over by bob"
    again = operator.post(f"/operators/live/{session.pk}/take-over")
    assert again.url == f"/operators/handoffs/{handoff.pk}/"


@pytest.mark.django_db
def test_it_sends_the_operator_to_the_watch_page_while_the_run_stops(bob):
    session = SessionFactory()
    Run.objects.create(session=session, agent=session.agent, status=RunStatus.RUNNING)
    operator = client_for(bob)
    response = operator.post(f"/operators/live/{session.pk}/take-over")
    assert response.url == f"/operators/live/{session.pk}/"
    bar = operator.get(f"/operators/live/{session.pk}/", headers={"HX-Request": "true"})
    assert "bob is taking over" in bar.content.decode()


@pytest.mark.django_db
def test_it_leaves_takeovers_out_of_the_time_to_pickup(bob):
    from agentops.operators.queue.selectors import handoff_figures

    session = SessionFactory()
    say(session, ("user", "hi"))
    session_take_over(session_id=session.pk, user=bob)
    figures = handoff_figures(since=timezone.now() - timedelta(days=1))
    assert figures["pickup"]["count"] == 0  # claimed as it was made: nobody waited
    assert figures["taken_over"] == 1
