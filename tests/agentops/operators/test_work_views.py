"""Working a conversation through the pages: the thread with private notes (and the console's
end-user view without them), canned replies' page and the reply box's data, labels, transfer,
snooze, the queue's label filter and snoozed list, the user's other conversations."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from agentops.models import AuditEntry, Handoff, HandoffStatus, Message, Role, Team
from agentops.operators.assignment.services import handoff_claim
from agentops.operators.canned.services import canned_reply_save
from agentops.operators.labels.services import session_label_add
from agentops.operators.models import CannedReply, Label, PrivateNote
from tests.agentops.operators.helpers import make_handoff
from tests.factories import SessionFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def canned_data(html: str) -> list[dict]:
    start = html.index('<script id="canned-replies" type="application/json">')
    start = html.index(">", start) + 1
    return json.loads(html[start : html.index("</script>", start)])


def test_it_shows_notes_in_the_operators_thread_and_never_in_the_console(bob, charlie):
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    client = client_for(bob)
    url = reverse("operators:note", args=[handoff.pk])
    added = client.post(url, {"content": "<b>check the refund</b>"}, HTTP_HX_REQUEST="true")
    assert added.status_code == 200
    assert "data-note-added" in added.content.decode()
    assert "&lt;b&gt;check the refund&lt;/b&gt;" in added.content.decode()  # escaped
    page = client.get(reverse("operators:handoff", args=[handoff.pk])).content.decode()
    assert 'class="msg msg-note"' in page and "&lt;b&gt;check the refund" in page
    assert page.index("I want a human") < page.index("check the refund")  # in time order
    for viewer in (bob, charlie):  # the console's view of the conversation (the end user's)
        console = client_for(viewer).get(reverse("console:session", args=[handoff.session_id]))
        assert "check the refund" not in console.content.decode()
    items = client.get(reverse("console:session_items", args=[handoff.session_id]))
    assert "check the refund" not in items.content.decode()
    refused = client.post(url, {"content": " "}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 422 and "must not be empty" in refused.content.decode()
    viewer = client_for(charlie).post(url, {"content": "x"})
    assert viewer.status_code == 403
    assert PrivateNote.objects.count() == 1


def test_it_gives_the_reply_box_the_usable_replies_filled_in(bob):
    bob.first_name = "Bob"
    bob.save()
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    canned_reply_save(
        reply=None,
        shortcut="hello",
        title="Greeting",
        content="Hi {{ user.name }}, {{ operator.name }} here. </script><b>",
        scope="personal",
        actor=bob,
    )
    canned_reply_save(
        reply=None,
        shortcut="other",
        title="x",
        content="x",
        scope="personal",
        actor=UserFactory(username="dave", role="operator"),
    )
    html = client_for(bob).get(reverse("operators:handoff", args=[handoff.pk])).content.decode()
    (entry,) = canned_data(html)  # dave's personal reply is not bob's
    assert entry["shortcut"] == "hello"
    assert entry["text"] == f"Hi {handoff.session.external_user}, Bob here. </script><b>"
    assert "</script><b>" not in html.split('id="canned-replies"')[1].split("</script>")[0]
    assert "data-canned" in html


def test_it_manages_canned_replies_with_form_errors_for_unknown_placeholders(alice, bob):
    billing = Team.objects.create(slug="billing", name="Billing")
    billing.members.add(bob)
    client = client_for(bob)
    url = reverse("operators:replies")
    page = client.get(url).content.decode()
    assert 'value="team:billing"' in page and 'value="everyone"' not in page
    bad = client.post(
        url,
        {"shortcut": "hi", "title": "Hi", "content": "Hi {{ user.email }}", "scope": "personal"},
    )
    assert bad.status_code == 400
    assert "Unknown placeholder {{ user.email }}" in bad.content.decode()
    everyone = client.post(
        url, {"shortcut": "hi", "title": "Hi", "content": "Hi", "scope": "everyone"}
    )
    assert everyone.status_code == 400 and not CannedReply.objects.exists()
    good = client.post(
        url,
        {
            "shortcut": "refund",
            "title": "Refund",
            "content": "Hi {{user.name}}",
            "scope": "team:billing",
        },
    )
    assert good.status_code == 302
    reply = CannedReply.objects.get()
    assert reply.team == billing and reply.created_by == bob
    edit = reverse("operators:reply_edit", args=[reply.pk])
    changed = client.post(
        edit, {"shortcut": "refund", "title": "Refunds", "content": "ok", "scope": "team:billing"}
    )
    assert changed.status_code == 302 and CannedReply.objects.get().title == "Refunds"
    outsider = client_for(UserFactory(username="dave", role="operator"))
    assert outsider.get(edit).status_code == 403
    assert outsider.post(reverse("operators:reply_delete", args=[reply.pk])).status_code == 403
    assert (
        client_for(alice).post(reverse("operators:reply_delete", args=[reply.pk])).status_code
        == 302
    )
    assert not CannedReply.objects.exists()


def test_it_labels_a_conversation_and_filters_the_queue(bob):
    labelled, _ = make_handoff(reason="labelled one"), make_handoff(reason="other one")
    client = client_for(bob)
    added = client.post(
        reverse("operators:label_add", args=[labelled.pk]),
        {"name": "Refund", "colour": "green"},
        HTTP_HX_REQUEST="true",
    )
    assert added.status_code == 200 and 'data-label="Refund"' in added.content.decode()
    assert "label-green" in added.content.decode()
    wrong = client.post(
        reverse("operators:label_add", args=[labelled.pk]), {"name": ""}, HTTP_HX_REQUEST="true"
    )
    assert wrong.status_code == 422 and "give the label a name" in wrong.content.decode()
    queue = client.get(reverse("operators:queue") + "?label=refund").content.decode()
    assert "labelled one" in queue and "other one" not in queue
    assert "Only conversations labelled" in queue
    full = client.get(reverse("operators:queue")).content.decode()
    assert "labelled one" in full and "other one" in full
    label = Label.objects.get()
    client.post(reverse("operators:label_remove", args=[labelled.pk, label.pk]))
    assert not label.sessions.exists()


def test_it_lets_admins_rename_recolour_and_delete_labels_operators_only_see_them(alice, bob):
    waiting, done = make_handoff(reason="waiting one"), make_handoff(reason="done one")
    for handoff in (waiting, done):
        session_label_add(session=handoff.session, name="Refund", actor=bob)
    session_label_add(session=done.session, name="VIP", actor=bob)
    Handoff.objects.filter(pk=done.pk).update(status=HandoffStatus.RESOLVED)
    refund, vip = Label.objects.get(name="Refund"), Label.objects.get(name="VIP")

    page = client_for(bob).get(reverse("operators:labels"))
    rows = {label.name: (label.conversations, label.active) for label in page.context["labels"]}
    assert rows == {"Refund": (2, 1), "VIP": (1, 0)}
    assert "Edit" not in page.content.decode()
    edit_url = reverse("operators:label_edit", args=[refund.pk])
    delete_url = reverse("operators:label_delete", args=[vip.pk])
    assert client_for(bob).post(edit_url, {"name": "x"}).status_code == 403
    assert client_for(bob).post(delete_url).status_code == 403

    admin = client_for(alice)
    taken = admin.post(edit_url, {"name": "vip", "colour": ""})
    assert taken.status_code == 400 and taken.context["form"].errors == {
        "name": ["a label named 'vip' exists already"]
    }
    assert admin.post(edit_url, {"name": "Refund", "colour": "pink"}).status_code == 400
    saved = admin.post(edit_url, {"name": "  Refund   asked ", "colour": "red"})
    assert saved.status_code == 302
    refund.refresh_from_db()
    assert (refund.name, refund.colour, refund.sessions.count()) == ("Refund asked", "red", 2)
    queue = admin.get(reverse("operators:queue") + "?label=refund+asked").content.decode()
    assert "waiting one" in queue

    assert admin.post(delete_url).status_code == 302
    assert not Label.objects.filter(pk=vip.pk).exists()
    assert list(done.session.labels.values_list("name", flat=True)) == ["Refund asked"]
    assert sorted(
        AuditEntry.objects.filter(action__startswith="label.").values_list("action", "target")
    ) == [("label.delete", "VIP"), ("label.update", "Refund")]


def test_it_transfers_with_a_note_and_the_receiver_finds_it_in_their_queue(bob):
    dave = UserFactory(username="dave", role="operator")
    handoff = make_handoff(reason="Pass it on")
    handoff_claim(handoff_id=handoff.pk, user=bob)
    response = client_for(bob).post(
        reverse("operators:transfer", args=[handoff.pk]),
        {"to": "operator:dave", "note": "She prefers email"},
    )
    assert response.status_code == 302 and response.url == reverse("operators:queue")
    dave_client = client_for(dave)
    queue = dave_client.get(reverse("operators:queue")).content.decode()
    assert f'data-claimed="{handoff.pk}"' in queue
    page = dave_client.get(reverse("operators:handoff", args=[handoff.pk])).content.decode()
    assert "Transfer to operator dave" in page and "She prefers email" in page
    refused = dave_client.post(
        reverse("operators:transfer", args=[handoff.pk]), {"to": "team:nope"}, follow=True
    )
    assert "Not transferred: to: there is no team" in refused.content.decode()
    # bob no longer holds it: he may not see it, let alone move it.
    gone = client_for(bob).post(reverse("operators:transfer", args=[handoff.pk]), {"to": "x"})
    assert gone.status_code == 403


def test_it_snoozes_out_of_the_queue_into_the_snoozed_list(bob):
    handoff = make_handoff(reason="Wait for the parcel")
    client = client_for(bob)
    response = client.post(reverse("operators:snooze", args=[handoff.pk]), {"for": "4h"})
    assert response.status_code == 302
    handoff.refresh_from_db()
    assert handoff.snoozed_at is not None and handoff.snoozed_until is not None
    queue = client.get(reverse("operators:queue")).content.decode()
    assert f'data-handoff="{handoff.pk}"' not in queue
    assert f'data-snoozed="{handoff.pk}"' in queue
    bad = client.post(
        reverse("operators:snooze", args=[handoff.pk]), {"for": "forever"}, follow=True
    )
    assert "choose how long" in bad.content.decode()
    client.post(reverse("operators:wake", args=[handoff.pk]))
    queue = client.get(reverse("operators:queue")).content.decode()
    assert f'data-handoff="{handoff.pk}"' in queue


def test_it_shows_the_users_other_conversations_beside_the_thread(bob):
    handoff = make_handoff()
    earlier = SessionFactory(external_user=handoff.session.external_user, title="Order 1234")
    Message.objects.create(session=earlier, seq=1, role=Role.USER, content="late")
    page = client_for(bob).get(reverse("operators:handoff", args=[handoff.pk])).content.decode()
    assert f'data-conversation="{earlier.pk}"' in page and "Order 1234" in page
    assert reverse("console:session", args=[earlier.pk]) in page
