"""An operator's unread count: read markers, the count's rules, the /ws/inbox/ stream."""

from __future__ import annotations

import pytest
from django.test import Client

from agentops.models import HandoffRead, Message, NotificationSettings, Role, Team
from agentops.operators.assignment.services import handoff_claim
from agentops.operators.queue.services import notification_sound_set
from agentops.operators.work.selectors import unread_counts
from agentops.operators.work.services import handoff_mark_read, handoff_note_add, handoff_transfer
from agentops.runtime.checkpoint import messages_append
from tests.agentops.observe.conftest import communicator, receive_until, run_async, session_cookie
from tests.agentops.operators.helpers import make_handoff
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def user_writes(handoff, text: str = "hello?") -> None:
    messages_append(session_id=handoff.session_id, messages=[Message(role=Role.USER, content=text)])


def test_it_counts_handoffs_in_the_queue_the_operator_has_not_opened(bob):
    first, second = make_handoff(), make_handoff()
    assert unread_counts(user=bob) == {"handoffs": 2, "messages": 0, "total": 2}
    handoff_mark_read(handoff=first, user=bob)
    assert unread_counts(user=bob)["handoffs"] == 1
    assert HandoffRead.objects.get(user=bob, handoff=first).last_seq == 1
    other = UserFactory(username="dave", role="operator")
    assert unread_counts(user=other)["handoffs"] == 2  # markers are per operator
    handoff_claim(handoff_id=second.pk, user=other)
    assert unread_counts(user=bob)["handoffs"] == 0  # not in bob's queue any more
    assert unread_counts(user=other)["handoffs"] == 2  # one open, one claimed: never opened


def test_it_counts_only_the_handoffs_of_the_operators_teams_and_those_of_no_team(bob, alice):
    billing, sales = Team.objects.create(slug="billing"), Team.objects.create(slug="sales")
    billing.members.add(bob)
    make_handoff(team=billing)
    make_handoff(team=sales)
    make_handoff()
    assert unread_counts(user=bob)["handoffs"] == 2
    assert unread_counts(user=alice)["handoffs"] == 3  # admins see every queue
    loner = UserFactory(username="erin", role="operator")
    assert unread_counts(user=loner)["handoffs"] == 3  # in no team: every queue


def test_it_counts_user_messages_in_claimed_conversations_since_the_operator_looked(bob):
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    handoff_mark_read(handoff=handoff, user=bob)
    assert unread_counts(user=bob)["total"] == 0
    user_writes(handoff)
    user_writes(handoff, "anyone there?")
    messages_append(
        session_id=handoff.session_id, messages=[Message(role=Role.OPERATOR, content="yes")]
    )
    assert unread_counts(user=bob) == {"handoffs": 0, "messages": 2, "total": 2}
    handoff_mark_read(handoff=handoff, user=bob)
    assert unread_counts(user=bob)["total"] == 0


def test_it_counts_for_operators_only(charlie):
    make_handoff()
    assert unread_counts(user=charlie)["total"] == 0


def test_it_marks_the_handoff_read_when_its_page_opens(bob):
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    user_writes(handoff)
    client = Client()
    client.force_login(bob)
    assert unread_counts(user=bob)["total"] == 2
    assert client.get(f"/operators/handoffs/{handoff.pk}/").status_code == 200
    assert unread_counts(user=bob)["total"] == 0
    user_writes(handoff)
    answer = client.post(f"/operators/handoffs/{handoff.pk}/read")
    assert answer.json() == {"handoffs": 0, "messages": 0, "total": 0}


def test_it_keeps_the_sound_setting_per_operator_off_by_default(bob):
    client = Client()
    client.force_login(bob)
    assert "data-notify-sound checked" not in client.get("/operators/").content.decode()
    assert client.post("/operators/notifications/sound", {"sound": "on"}).json() == {"sound": True}
    assert NotificationSettings.objects.get(user=bob).sound
    assert "data-notify-sound checked" in client.get("/operators/").content.decode()
    bad = client.post("/operators/notifications/sound", {"sound": "loud"})
    assert bad.status_code == 400 and "sound" in bad.json()["error"]
    notification_sound_set(user=bob, on=False)
    assert not NotificationSettings.objects.get(user=bob).sound


def test_it_streams_the_count_recomputed_at_connect_and_on_changes(bob):
    cookie = session_cookie(bob)
    make_handoff()

    async def main():
        from asgiref.sync import sync_to_async

        from tracing.platform.live import wait_sent

        inbox = communicator("/ws/inbox/", cookie)
        assert (await inbox.connect())[0]
        first = await inbox.receive_json_from(timeout=5)
        assert first == {
            "kind": "unread",
            "handoffs": 1,
            "messages": 0,
            "total": 1,
            "sound": False,
            "presence": "online",  # a login, and an open page
            "initial": True,
        }

        def act():
            make_handoff()
            from tracing.platform.live import broadcast

            broadcast("ops", {"kind": "handoff.created", "handoff_id": 0})
            wait_sent()

        await sync_to_async(act)()
        got = await receive_until(inbox, lambda ms: any(m.get("total") == 2 for m in ms))
        assert got[-1]["handoffs"] == 2 and "initial" not in got[-1]
        await inbox.disconnect()

        # Away: another handoff comes. The reconnected stream reads the count anew.
        await sync_to_async(make_handoff)()
        again = communicator("/ws/inbox/", cookie)
        assert (await again.connect())[0]
        assert (await again.receive_json_from(timeout=5))["total"] == 3
        await again.disconnect()

    run_async(main)


def test_it_recounts_when_the_operators_read_markers_move(bob):
    cookie = session_cookie(bob)
    handoff = make_handoff()

    async def main():
        from asgiref.sync import sync_to_async

        from tracing.platform.live import wait_sent

        inbox = communicator("/ws/inbox/", cookie)
        assert (await inbox.connect())[0]
        assert (await inbox.receive_json_from(timeout=5))["total"] == 1

        def read():
            handoff_mark_read(handoff=handoff, user=bob)
            wait_sent()

        await sync_to_async(read)()
        got = await receive_until(inbox, lambda ms: any(m.get("total") == 0 for m in ms))
        assert got[-1]["kind"] == "unread"
        await inbox.disconnect()

    run_async(main)


def test_it_tells_open_pages_of_a_new_private_note_by_ids_never_its_text(bob, alice):
    cookie = session_cookie(bob)
    handoff = make_handoff()

    async def main():
        from asgiref.sync import sync_to_async

        from tracing.platform.live import wait_sent

        inbox = communicator("/ws/inbox/", cookie)
        assert (await inbox.connect())[0]
        assert (await inbox.receive_json_from(timeout=5))["kind"] == "unread"

        def add():
            note = handoff_note_add(handoff=handoff, user=alice, content="VIP, be quick")
            wait_sent()
            return note

        await sync_to_async(add)()
        got = await receive_until(inbox, lambda ms: any(m["kind"] == "note" for m in ms))
        told = next(m for m in got if m["kind"] == "note")
        mine = {"kind": "note", "handoff_id": handoff.pk, "session_id": str(handoff.session_id)}
        assert told == mine  # which conversation, never the text

        def transfer():
            handoff_claim(handoff_id=handoff.pk, user=alice)
            handoff_transfer(handoff=handoff, user=alice, to_operator="bob", note="over to you")
            wait_sent()

        await sync_to_async(transfer)()
        got = await receive_until(inbox, lambda ms: any(m["kind"] == "note" for m in ms))
        assert [m for m in got if m["kind"] == "note"] == [mine]  # a transfer leaves a note
        await inbox.disconnect()

    run_async(main)


def test_it_gives_an_open_page_the_notes_it_has_not_shown(bob, alice, charlie):
    handoff = make_handoff()
    first = handoff_note_add(handoff=handoff, user=alice, content="first <b>note</b>")
    second = handoff_note_add(handoff=handoff, user=alice, content="second note")
    client = Client()
    client.force_login(bob)
    url = f"/operators/handoffs/{handoff.pk}/notes"
    everything = client.get(url).content.decode()
    assert f'data-note="{first.pk}"' in everything and f'data-note="{second.pk}"' in everything
    assert "first &lt;b&gt;note&lt;/b&gt;" in everything  # escaped
    newer = client.get(url, {"after": first.pk}).content.decode()
    assert f'data-note="{first.pk}"' not in newer and "second note" in newer
    assert client.get(url, {"after": second.pk}).content == b""
    assert client.get(url, {"after": "x"}).status_code == 400
    viewer = Client()
    viewer.force_login(charlie)
    assert viewer.get(url).status_code == 403


def test_it_refuses_the_inbox_stream_to_viewers_and_strangers(charlie):
    cookie = session_cookie(charlie)

    async def main():
        viewer = communicator("/ws/inbox/", cookie)
        await viewer.connect()
        assert (await viewer.receive_output(timeout=5))["code"] == 4403
        stranger = communicator("/ws/inbox/")
        await stranger.connect()
        assert (await stranger.receive_output(timeout=5))["code"] == 4401

    run_async(main)
