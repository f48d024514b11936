"""Working a conversation through the API (agentops/operators/*/api.py): private notes reach
operators only — never the conversation's JSON, the widget's history or the model after
hand-back — and transfer, snooze and labels with their errors naming the field."""

from __future__ import annotations

import pytest

from agentops.models import Handoff, HandoffStatus, RunStatus, Session, Team
from agentops.operators.models import PrivateNote
from agentops.widget.selectors import session_messages_after
from tests.agentops.operators.helpers import make_handoff
from tests.agentops.runtime.helpers import wait_for_run
from tests.agentops.test_api_handoffs import post
from tests.factories import UserFactory
from tests.kit import bearer
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "Operators only: suspected chargeback fraud"


def test_it_keeps_a_private_note_from_the_end_user_and_the_model(
    client, bob, charlie, dev_agent, devmodel, model_name, worker
):
    dev_agent.tools.add(*python_tools_sync())
    integrator = UserFactory(username="integrator", role="operator")
    backend, operator = bearer(integrator), bearer(bob)
    session = post(client, "/api/sessions", backend, {"agent": dev_agent.slug, "user": "erin"})
    session_id = session.json()["id"]
    posted = post(client, f"/api/sessions/{session_id}/messages", backend, {"content": "a human"})
    assert wait_for_run(posted.json()["run"]).status == RunStatus.HANDED_OFF
    handoff = Handoff.objects.get(session_id=session_id)
    assert post(client, f"/api/handoffs/{handoff.pk}/claim", operator).status_code == 200

    noted = post(client, f"/api/handoffs/{handoff.pk}/notes", operator, {"content": SECRET})
    assert noted.status_code == 201, noted.content
    assert noted.json()["author"] == "bob" and noted.json()["content"] == SECRET
    empty = post(client, f"/api/handoffs/{handoff.pk}/notes", operator, {"content": ""})
    assert empty.status_code == 422 and empty.json()["field"] == "content"
    replied = post(client, f"/api/handoffs/{handoff.pk}/reply", operator, {"content": "Hi Erin"})
    assert replied.status_code == 201

    # Operators read the notes; a viewer may not.
    notes = client.get(f"/api/handoffs/{handoff.pk}/notes", **operator).json()["notes"]
    assert [n["content"] for n in notes] == [SECRET]
    assert client.get(f"/api/handoffs/{handoff.pk}/notes", **bearer(charlie)).status_code == 403

    # The end user's side: the conversation JSON and the widget's history.
    conversation = client.get(f"/api/sessions/{session_id}/messages", **backend)
    assert conversation.status_code == 200
    assert SECRET not in conversation.content.decode()
    assert "Hi Erin" in conversation.content.decode()
    assert SECRET not in str(
        session_messages_after(session=Session.objects.get(pk=session_id), after=0)
    )

    thanks = post(client, f"/api/sessions/{session_id}/messages", backend, {"content": "thanks"})
    assert thanks.status_code == 202 and thanks.json()["run"] is None  # waits for the operator

    # Hand back: the agent answers with the operator's reply in its context, not the note.
    back = post(client, f"/api/handoffs/{handoff.pk}/hand-back", operator)
    assert back.status_code == 202, back.content
    assert wait_for_run(back.json()["run"]).status == RunStatus.SUCCEEDED
    seen = [text for r in devmodel.requests(model_name) for _, text in r["transcript"]]
    assert any("Hi Erin" in text for text in seen)
    assert not any("chargeback" in text for text in seen)
    assert PrivateNote.objects.count() == 1


def test_it_keeps_another_operators_conversation_theirs_as_its_page_does(client, alice, bob):
    dave = UserFactory(username="dave", role="operator")
    handoff = make_handoff()
    assert post(client, f"/api/handoffs/{handoff.pk}/claim", bearer(bob)).status_code == 200
    post(client, f"/api/handoffs/{handoff.pk}/notes", bearer(bob), {"content": SECRET})
    notes = f"/api/handoffs/{handoff.pk}/notes"
    labels = f"/api/sessions/{handoff.session_id}/labels"
    other = bearer(dave)
    refused = [
        client.get(notes, **other),
        post(client, notes, other, {"content": "mine now"}),
        post(client, labels, other, {"name": "VIP"}),
        post(client, f"{labels}/remove", other, {"name": "VIP"}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert "bob has this conversation" in refused[0].json()["error"]
    assert PrivateNote.objects.count() == 1 and not Session.objects.get().labels.exists()
    admin = bearer(alice)  # admins may, as on the pages
    assert client.get(notes, **admin).json()["notes"][0]["content"] == SECRET
    assert post(client, labels, admin, {"name": "VIP"}).status_code == 200


def test_it_transfers_snoozes_and_labels_through_the_api(client, bob):
    dave = UserFactory(username="dave", role="operator")
    Team.objects.create(slug="billing", name="Billing")
    handoff = make_handoff()
    operator = bearer(bob)
    base = f"/api/handoffs/{handoff.pk}"
    assert post(client, f"{base}/claim", operator).status_code == 200

    bad = post(client, f"{base}/snooze", operator, {"minutes": 0})
    assert bad.status_code == 422 and bad.json()["field"] == "minutes"
    snoozed = post(client, f"{base}/snooze", operator, {"minutes": None})
    assert snoozed.status_code == 200, snoozed.content
    assert snoozed.json()["snoozed_at"] and snoozed.json()["snoozed_until"] is None
    woken = post(client, f"{base}/wake", operator)
    assert woken.status_code == 200 and woken.json()["snoozed_at"] is None
    assert post(client, f"{base}/wake", operator).status_code == 409

    session = f"/api/sessions/{handoff.session_id}/labels"
    labelled = post(client, session, operator, {"name": "VIP", "colour": "purple"})
    assert labelled.status_code == 200 and labelled.json() == {"labels": ["VIP"]}
    wrong = post(client, session, operator, {"name": "x", "colour": "#fff"})
    assert wrong.status_code == 422 and wrong.json()["field"] == "colour"
    blank = post(client, session, operator, {"name": "  "})
    assert blank.status_code == 422 and blank.json()["field"] == "name"
    listed = client.get("/api/handoffs?status=all&label=vip", **operator).json()["handoffs"]
    assert [h["id"] for h in listed] == [handoff.pk] and listed[0]["labels"] == ["VIP"]
    assert client.get("/api/handoffs?status=all&label=other", **operator).json()["handoffs"] == []
    removed = post(client, f"{session}/remove", operator, {"name": "vip"})
    assert removed.status_code == 200 and removed.json() == {"labels": []}

    nobody = post(client, f"{base}/transfer", operator, {"to": "dave", "note": "x"})
    assert nobody.status_code == 422 and nobody.json()["field"] == "to"
    unknown = post(client, f"{base}/transfer", operator, {"to": "operator:zed"})
    assert unknown.status_code == 404 and "not an active operator" in unknown.json()["error"]
    moved = post(client, f"{base}/transfer", operator, {"to": "operator:dave", "note": "yours"})
    assert moved.status_code == 200, moved.content
    assert moved.json()["claimed_by"] == "dave" and moved.json()["status"] == "claimed"
    again = post(client, f"{base}/transfer", operator, {"to": "team:billing"})
    assert again.status_code == 409  # bob no longer holds it
    same = post(client, f"{base}/transfer", bearer(dave), {"to": "operator:dave"})
    assert same.status_code == 409 and "already has" in same.json()["error"]
    to_team = post(client, f"{base}/transfer", bearer(dave), {"to": "team:billing"})
    assert to_team.json()["status"] == HandoffStatus.OPEN and to_team.json()["team"] == "billing"
