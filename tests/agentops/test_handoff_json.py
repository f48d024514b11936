"""A handoff has one JSON shape (agentops.conversation.handoff_serialise) that the API, /v1/,
the conversation snapshot, the `handoff.*` webhooks and the `handoff.created` ops event all
carry: the same fields say the same thing at every door. Before, each wrote its own, and the
ops event announced a handoff without its run or status."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.test import Client

from agentops.conversation import handoff_serialise
from agentops.models import Message, Role, Run, RunStatus, Team
from agentops.openai_compat.selectors import handoff_info
from agentops.runtime.checkpoint import messages_append
from agentops.runtime.services import handoff_open
from agentops.selectors import conversation_get
from agentops.webhooks.models import WebhookEvent
from agentops.webhooks.services import webhook_endpoint_create
from tests.factories import SessionFactory, UserFactory
from tracing.platform.live import OPS_GROUP, capture_live_events

pytestmark = pytest.mark.django_db(transaction=True)
EVENT_NAMES = {"handoff_id": "id", "reason": "reason", "team": "team", "priority": "priority"}


def test_every_door_tells_the_same_handoff():
    webhook_endpoint_create(url="https://hooks.example.com/a", event_types=["handoff.created"])
    team = Team.objects.create(slug="billing", name="Billing")
    session = SessionFactory()
    messages_append(session_id=session.pk, messages=[Message(role=Role.USER, content="human")])
    run = Run.objects.create(session=session, agent=session.agent, status=RunStatus.HANDED_OFF)
    with capture_live_events() as sent, transaction.atomic():
        handoff = handoff_open(
            session_id=session.pk,
            agent_slug=session.agent.slug,
            run_id=run.pk,
            reason="The user asked for a human",
            team=team,
            priority=1,
        )
    handoff.refresh_from_db()
    brief = handoff_serialise(handoff)
    assert brief["team"] == "billing" and brief["priority"] == 1

    client = Client()
    client.force_login(UserFactory(username="viewer", role="viewer"))
    (listed,) = client.get("/api/handoffs").json()["handoffs"]
    assert {key: listed[key] for key in brief} == brief
    conversation = client.get(f"/api/sessions/{session.pk}/messages").json()
    assert conversation["handoff"] == brief
    assert handoff_info(conversation_get(session=session).handoff) == brief  # /v1/

    webhook = WebhookEvent.objects.get(type="handoff.created").payload["data"]
    (created,) = [event for group, event in sent if event["kind"] == "handoff.created"]
    assert (OPS_GROUP, created) in sent
    for told in (webhook, created):
        assert {name: told[name] for name in EVENT_NAMES} == {
            name: brief[key]
            for name, key in EVENT_NAMES.items()  # type: ignore[literal-required]
        }
        assert told["session_id"] == str(session.pk) and told["run_id"] == str(run.pk)
        assert told["status"] == brief["status"]
