"""Webhook deliveries: Standard Webhooks signatures, retries with backoff, deduplication by
event id, the egress guard, disabling an endpoint that keeps failing — delivered by a real
RQ worker to a loopback HTTP server, over the real Postgres and Redis."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from agentops.models import AuditEntry, Team
from agentops.operators.assignment.services import handoff_claim
from agentops.operators.work.services import handoff_close, handoff_reply
from agentops.runtime.services import session_create, session_post_message, toolcall_decide
from agentops.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from agentops.webhooks.services import (
    MAX_ATTEMPTS,
    RETRY_DELAYS,
    webhook_delivery_attempt,
    webhook_delivery_resend,
    webhook_endpoint_create,
    webhook_event_emit,
    webhook_sign,
    webhooks_dispatch_due,
)
from tests.agentops.runtime.helpers import wait_for_run
from tests.factories import AgentFactory
from tests.kit import until
from tools.models import ToolDefinition
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)

ALL = ["session.created", "message.created", "run.succeeded", "run.failed", "run.handed_off"]


def subscribe(url: str, types: list[str]) -> tuple[WebhookEndpoint, str]:
    return webhook_endpoint_create(url=url, event_types=types)


def next_attempt_now(delivery: WebhookDelivery) -> None:
    """Let the retry's time come (the scheduler's sweep then finds it due)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def test_it_signs_with_the_spec_test_vector():
    headers = webhook_sign(
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        event_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=datetime.fromtimestamp(1614265330, tz=UTC),
        body='{"test": 2432232314}',
    )
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert headers["webhook-id"] == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    assert headers["webhook-timestamp"] == "1614265330"


def test_it_delivers_a_signed_event_the_standard_verifier_accepts(receiver, hook_worker):
    endpoint, secret = subscribe(receiver.url, ["session.created"])
    assert secret.startswith("whsec_") and secret not in endpoint.secret_ciphertext
    agent = AgentFactory()
    session = session_create(agent=agent, external_user="erin", title="Billing")

    (headers, body), *_ = receiver.wait(1)
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "session.created"
    assert payload["data"] == {
        "session_id": str(session.pk),
        "agent": agent.slug,
        "user": "erin",
        "title": "Billing",
    }
    assert headers["webhook-id"] == f"evt_session_{session.pk}"
    delivery = until(
        lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.SUCCEEDED).first()
    )
    assert delivery.attempts == 1 and delivery.response_status == 200
    assert delivery.response_body == "ok" and delivery.error == ""
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(body.replace(b"erin", b"mallory"), headers)


def test_it_retries_a_500_with_backoff_keeping_the_event_id(receiver, hook_worker):
    receiver.statuses = [500, 500, 200]
    _, secret = subscribe(receiver.url, ["session.created"])
    session_create(agent=AgentFactory())

    receiver.wait(1)
    delivery = until(lambda: WebhookDelivery.objects.filter(error="HTTP 500").first())
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert delivery.response_status == 500 and "receiver is down" in delivery.response_body
    wait = delivery.next_attempt_at - delivery.last_attempt_at
    assert timedelta(seconds=RETRY_DELAYS[0]) <= wait < timedelta(seconds=RETRY_DELAYS[0] + 5)
    assert webhooks_dispatch_due() == 0  # not due yet

    next_attempt_now(delivery)
    assert webhooks_dispatch_due() == 1
    receiver.wait(2)
    delivery = until(
        lambda: WebhookDelivery.objects.filter(pk=delivery.pk, attempts=2, error="HTTP 500").first()
    )
    wait = delivery.next_attempt_at - delivery.last_attempt_at
    assert timedelta(seconds=RETRY_DELAYS[1]) <= wait < timedelta(seconds=RETRY_DELAYS[1] + 5)

    next_attempt_now(delivery)
    webhooks_dispatch_due()
    requests = receiver.wait(3)
    delivery = until(
        lambda: WebhookDelivery.objects.filter(pk=delivery.pk, status="succeeded").first()
    )
    assert delivery.attempts == 3 and delivery.response_status == 200
    assert len({h["webhook-id"] for h, _ in requests}) == 1  # the receiver deduplicates on it
    for headers, body in requests:
        Webhook(secret).verify(body, headers)
    assert not WebhookEndpoint.objects.get().failing_since  # a success ends the streak
    # Backoff for about a day in all.
    assert timedelta(hours=20) < timedelta(seconds=sum(RETRY_DELAYS)) < timedelta(hours=30)


def test_it_emits_one_event_per_occurrence(receiver, hook_worker):
    _, secret = subscribe(receiver.url, ["message.created"])
    data = {"session_id": str(uuid.uuid4()), "content": "hi"}  # a session id, as services send
    first = webhook_event_emit(type="message.created", key="message_1", data=data)
    again = webhook_event_emit(type="message.created", key="message_1", data=data)
    assert first is not None and again is not None and first.pk == again.pk == "evt_message_1"
    assert WebhookDelivery.objects.count() == 1
    receiver.wait(1)
    delivery = until(lambda: WebhookDelivery.objects.filter(status="succeeded").first())

    # Sending it again by hand keeps the event id: the receiver can tell it has it already.
    webhook_delivery_resend(delivery=delivery, actor=None)
    requests = receiver.wait(2)
    assert [h["webhook-id"] for h, _ in requests] == ["evt_message_1", "evt_message_1"]
    assert Webhook(secret).verify(requests[1][1], requests[1][0])["data"] == data
    # An event nobody subscribed to is not even stored.
    assert webhook_event_emit(type="run.failed", key="run_x", data={}) is None
    assert WebhookEvent.objects.count() == 1


def test_it_sends_through_the_egress_guard(receiver, settings):
    settings.TOOL_EGRESS_ALLOWLIST = []
    subscribe(receiver.url, ["session.created"])
    session_create(agent=AgentFactory())
    delivery = WebhookDelivery.objects.get()
    result = webhook_delivery_attempt(delivery_id=delivery.pk)
    assert result is not None and result.status == DeliveryStatus.PENDING
    assert result.error.startswith("EgressDenied: Refused to connect to 127.0.0.1")
    assert result.response_status is None and receiver.requests == []


def test_it_disables_an_endpoint_that_keeps_failing(receiver, hook_worker, alice):
    receiver.statuses = [503]
    failing, _ = subscribe(receiver.url, ["session.created"])
    session_create(agent=AgentFactory())
    delivery = WebhookDelivery.objects.get()
    attempted = WebhookDelivery.objects.filter(pk=delivery.pk).exclude(error="")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        receiver.wait(attempt)
        delivery = until(lambda n=attempt: attempted.filter(attempts=n).first())
        if attempt < MAX_ATTEMPTS:
            assert delivery.status == DeliveryStatus.PENDING
            next_attempt_now(delivery)
            webhooks_dispatch_due()
    assert delivery.status == DeliveryStatus.FAILED and delivery.next_attempt_at is None
    failing.refresh_from_db()
    assert not failing.enabled and "every delivery attempt failed" in failing.disabled_reason
    assert "HTTP 503" in failing.disabled_reason
    assert AuditEntry.objects.filter(action="webhook.disabled").count() == 1

    # Disabled: no more deliveries for it, and the sweep leaves its backlog alone.
    session_create(agent=AgentFactory())
    assert WebhookDelivery.objects.count() == 1
    assert webhooks_dispatch_due() == 0


def test_it_keeps_an_endpoint_that_failed_one_event_but_took_others(receiver, hook_worker):
    endpoint, _ = subscribe(receiver.url, ["session.created"])
    session_create(agent=AgentFactory())
    receiver.wait(1)
    delivery = until(lambda: WebhookDelivery.objects.filter(status="succeeded").first())
    # An older delivery that gave up while a newer one got through: the endpoint works.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status="pending",
        attempts=MAX_ATTEMPTS - 1,
        next_attempt_at=timezone.now(),
        first_attempt_at=timezone.now() - timedelta(days=1),
    )
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now())
    receiver.statuses = [500]
    webhooks_dispatch_due()
    receiver.wait(2)
    until(lambda: WebhookDelivery.objects.filter(pk=delivery.pk, status="failed").first())
    endpoint.refresh_from_db()
    assert endpoint.enabled


@pytest.fixture
def agent(dev_agent):
    dev_agent.tools.add(*python_tools_sync())
    return dev_agent


def events(type_: str) -> list[dict]:
    return [e.payload for e in WebhookEvent.objects.filter(type=type_).order_by("created_at")]


def test_it_emits_the_events_of_runs_handoffs_and_approvals(worker, agent, bob):
    # The shared worker may not reach loopback: this test reads the events it recorded.
    subscribe(
        "https://hooks.invalid/agentops",
        [t for t, _ in WebhookEvent._meta.get_field("type").choices],
    )
    session = session_create(agent=agent, external_user="erin")
    run = wait_for_run(session_post_message(session=session, content="hello").pk)
    assert run.status == "succeeded"
    assert [e["data"]["session_id"] for e in events("session.created")] == [str(session.pk)]
    (answer,) = events("message.created")
    assert answer["data"]["role"] == "assistant" and answer["data"]["content"] == "You said: hello"
    assert answer["data"]["run_id"] == str(run.pk)
    # A run's ending is emitted just after it is stored: the test may read it first.
    (succeeded,) = until(lambda: events("run.succeeded"))
    assert succeeded["data"]["run_id"] == str(run.pk) and succeeded["data"]["status"] == "succeeded"

    echo = ToolDefinition.objects.get(name="echo")
    echo.requires_approval = True
    echo.save()
    waiting = session_post_message(session=session, content='call echo {"text": "x"}')
    (approval,) = until(lambda: events("approval.requested"))
    assert approval["data"]["tool"] == "echo" and approval["data"]["arguments"] == {"text": "x"}
    assert approval["data"]["run_id"] == str(waiting.pk)
    toolcall_decide(tool_call=waiting.tool_calls.get(), approve=True, actor=bob, note="fine")
    wait_for_run(waiting.pk)

    handed = wait_for_run(session_post_message(session=session, content="a human please").pk)
    assert handed.status == "handed_off"
    (created,) = events("handoff.created")
    (ended,) = until(lambda: events("run.handed_off"))
    assert ended["data"]["run_id"] == str(handed.pk)
    handoff = handed.handoffs.get()
    assert created["data"]["handoff_id"] == handoff.pk and "human" in created["data"]["reason"]
    handoff_claim(handoff_id=handoff.pk, user=bob)
    handoff_reply(handoff=handoff, user=bob, content="Hello, Bob here.")
    handoff_close(handoff=handoff, user=bob)
    (claimed,) = events("handoff.claimed")
    assert claimed["data"]["operator"] == "bob"
    reply = events("message.created")[-1]["data"]
    assert reply["role"] == "operator" and reply["author"] == "bob"
    (closed,) = events("handoff.closed")
    assert closed["data"]["resolution"] == "closed"
    # User messages and tool traffic are not message.created events.
    assert {e["data"]["role"] for e in events("message.created")} == {"assistant", "operator"}
    assert all(
        json.dumps(e.payload) for e in WebhookEvent.objects.all()
    )  # every payload is JSON as sent


def test_it_forgets_old_deliveries_with_the_traces(settings):
    from tracing.retention import retention_purge

    # Rows as delivery leaves them, written here: a worker of this module's other tests must
    # not be attempting them while the purge runs.
    endpoint, _ = subscribe("https://hooks.example.com/a", ["session.created"])
    for index, status in enumerate(["succeeded", "succeeded", "pending"]):
        event = WebhookEvent.objects.create(id=f"evt_{index}", type="session.created", payload={})
        WebhookDelivery.objects.create(event=event, endpoint=endpoint, status=status)
    old, kept, pending = WebhookDelivery.objects.order_by("pk")
    long_ago = timezone.now() - timedelta(days=365)
    WebhookDelivery.objects.filter(pk__in=[old.pk, pending.pk]).update(created_at=long_ago)
    WebhookEvent.objects.filter(pk__in=[old.event_id, pending.event_id]).update(created_at=long_ago)
    assert retention_purge()["agentops.webhooks"] == 2  # the old delivery and its event
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {kept.pk, pending.pk}
    assert set(WebhookEvent.objects.values_list("pk", flat=True)) == {
        kept.event_id,
        pending.event_id,
    }


def test_it_names_the_handoffs_team_by_its_slug():
    from agentops.hooks import Event
    from agentops.webhooks.services import webhook_event_on_record
    from tests.agentops.operators.helpers import make_handoff

    subscribe("https://hooks.example.com/a", ["handoff.created"])
    team = Team.objects.create(slug="billing", name="Billing")
    handoff = make_handoff(team=team)
    webhook_event_on_record(Event(kind="handoff.created", handoff=handoff))
    event = WebhookEvent.objects.get(type="handoff.created")
    assert event.payload["data"]["team"] == "billing"


def test_it_tells_integrators_nothing_of_a_sandbox_session(alice):
    """A draft chat (or an experiment's session, or a fork) is nobody's conversation: no
    session, message or run event goes out for it; a real conversation's do."""
    from agentops.agents.services import agent_version_create
    from agentops.models import Message, Role, Run, RunStatus
    from agentops.runtime.checkpoint import messages_append, status_broadcast
    from agentops.runtime.drafts import draft_session_start

    subscribe("https://hooks.example.com/a", ALL)
    agent = AgentFactory()
    agent_version_create(agent=agent, author=alice, publish=True)
    for session in (draft_session_start(agent=agent, author=alice), session_create(agent=agent)):
        messages_append(
            session_id=session.pk, messages=[Message(role=Role.ASSISTANT, content="hi")]
        )
        status_broadcast(
            Run.objects.create(session=session, agent=agent, status=RunStatus.SUCCEEDED)
        )
    real = str(session.pk)
    events = list(WebhookEvent.objects.values_list("type", "payload"))
    assert sorted(t for t, _ in events) == ["message.created", "run.succeeded", "session.created"]
    assert {p["data"]["session_id"] for _, p in events} == {real}


def test_an_event_asks_one_query_of_the_subscriptions_and_counts_a_new_one_at_once():
    """Whatever the endpoints, an event nobody subscribes to costs one statement (a session
    created is not even read); one subscribed a moment ago, or removed, counts at once."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from agentops.webhooks.services import webhook_endpoint_delete

    agent = AgentFactory()
    for n in range(3):
        subscribe(f"https://hooks.example.com/{n}", ["run.failed"])
    with CaptureQueriesContext(connection) as asked:
        session_create(agent=agent)
    assert len([q for q in asked if "agentops_webhookendpoint" in q["sql"]]) == 1
    assert not any('FROM "agentops_session"' in q["sql"] for q in asked)
    assert not WebhookEvent.objects.exists()
    endpoint, _ = subscribe("https://hooks.example.com/new", ["session.created"])
    session_create(agent=agent)
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1
    webhook_endpoint_delete(endpoint=endpoint, actor=None)
    session_create(agent=agent)
    assert WebhookEvent.objects.filter(type="session.created").count() == 1
