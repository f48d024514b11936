"""Presence follows the person: online from login unless they chose otherwise (the choice is
remembered), away once no operator page has been open for OPERATOR_AWAY_AFTER_SECONDS (the
scheduler's sweep), back when a page opens (/ws/inbox/), offline at logout; no conversation
is given to an operator who is not online, and the pages say so."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agentops.models import AssignmentMode, Handoff, OperatorState, Presence, Team
from agentops.operators.assignment.services import handoff_assign
from agentops.operators.presence.services import (
    operator_logged_in,
    operator_page_seen,
    operator_presence_set,
    operators_away_sweep,
)
from tests.agentops.observe.conftest import communicator, receive_until, run_async, session_cookie
from tests.agentops.operators.helpers import make_handoff
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

BANNER = "no conversations are assigned to you"


def state(user) -> OperatorState:  # type: ignore[no-untyped-def]
    return OperatorState.objects.get(user=user)


def no_page_since(user, seconds: int) -> None:  # type: ignore[no-untyped-def]
    OperatorState.objects.filter(user=user).update(
        seen_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_an_operator_is_online_from_login_unless_they_chose_otherwise(bob, charlie):
    client = Client()
    client.post(reverse("login"), {"username": "bob", "password": "correct horse battery staple"})
    assert (state(bob).presence, state(bob).chosen) == ("online", "online")
    page = client.get(reverse("operators:queue")).content.decode()
    assert 'data-presence="online"' in page
    assert "data-presence-banner" in page and 'role="status" hidden' in page

    client.post(reverse("operators:presence"), {"presence": "away"})
    client.post(reverse("logout"))
    assert (state(bob).presence, state(bob).chosen) == ("offline", "away")
    client.force_login(bob)
    assert state(bob).presence == "away"  # remembered, not forced online
    page = client.get(reverse("operators:queue")).content.decode()
    assert f"You are <strong data-presence-word>away</strong>: {BANNER}." in page
    assert "data-go-online" in page

    # The banner's button: online again, back on the same page.
    response = client.post(reverse("operators:presence"), {"presence": "online", "next": "/teams/"})
    assert response.url == "/teams/" and state(bob).presence == "online"

    viewer = Client()
    viewer.force_login(charlie)
    assert not OperatorState.objects.filter(user=charlie).exists()
    assert "data-presence-banner" not in viewer.get(reverse("home")).content.decode()


def test_the_sweep_makes_away_whoever_has_no_page_open_and_a_page_brings_them_back():
    team = Team.objects.create(
        slug="desk", name="Desk", assignment_mode=AssignmentMode.ROUND_ROBIN, concurrent_cap=5
    )
    ann, ben, cat = (UserFactory(username=n, role="operator") for n in ("ann", "ben", "cat"))
    team.members.set([ann, ben, cat])
    for person in (ann, ben, cat):
        operator_logged_in(user=person)
    operator_presence_set(user=cat, presence=Presence.OFFLINE)
    assert operators_away_sweep() == 0  # every page was just seen

    away_after = settings.OPERATOR_AWAY_AFTER_SECONDS
    no_page_since(ann, away_after + 1)  # her laptop closed: no beat since
    no_page_since(ben, away_after - 5)  # his page beat a little while ago
    no_page_since(cat, away_after + 1)  # offline by choice: left as she is
    assert operators_away_sweep() == 1
    assert [(state(p).presence, state(p).chosen) for p in (ann, ben, cat)] == [
        ("away", "online"),
        ("online", "online"),
        ("offline", "offline"),
    ]
    assert operators_away_sweep() == 0  # once

    # Away gets no new conversation: both go to ben.
    first, second = make_handoff(team=team), make_handoff(team=team)
    assert [handoff_assign(handoff_id=h.pk) for h in (first, second)] == [ben, ben]

    # A page closing starts the clock again; the sweep waits for it.
    operator_page_seen(user=ben, opened=False)
    assert operators_away_sweep(now=timezone.now() + timedelta(seconds=away_after - 1)) == 0
    assert operators_away_sweep(now=timezone.now() + timedelta(seconds=away_after + 1)) == 1
    third = make_handoff(team=team)
    assert handoff_assign(handoff_id=third.pk) is None  # nobody online: it waits

    # Ann opens a page: online again, as she chose, and given the waiting conversation.
    operator_page_seen(user=ann, opened=True)
    assert state(ann).presence == "online"
    assert Handoff.objects.get(pk=third.pk).claimed_by == ann


def test_the_inbox_socket_brings_the_operator_back_and_follows_their_presence(bob):
    cookie = session_cookie(bob)  # a login: online
    no_page_since(bob, settings.OPERATOR_AWAY_AFTER_SECONDS + 1)
    assert operators_away_sweep() == 1

    async def main():  # type: ignore[no-untyped-def]
        from asgiref.sync import sync_to_async

        from tracing.platform.live import wait_sent

        inbox = communicator("/ws/inbox/", cookie)
        assert (await inbox.connect())[0]
        first = await inbox.receive_json_from(timeout=5)
        assert first["kind"] == "unread" and first["presence"] == "online"

        def choose_offline() -> None:
            operator_presence_set(user=bob, presence=Presence.OFFLINE)
            wait_sent()

        await sync_to_async(choose_offline)()
        got = await receive_until(inbox, lambda ms: any(m["kind"] == "presence" for m in ms))
        assert got[-1] == {"kind": "presence", "presence": "offline"}
        before = (await sync_to_async(state)(bob)).seen_at
        await inbox.disconnect()
        return before

    before = run_async(main)
    assert state(bob).presence == "offline"  # a chosen offline stays, page or not
    assert state(bob).seen_at > before  # the page closed: the away clock starts there
