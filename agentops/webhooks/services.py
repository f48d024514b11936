"""Writes of the webhooks feature: subscriptions, emitting events, delivery attempts.

Emitting never slows what emits: `webhook_event_emit` stores the event and one delivery per
subscribed endpoint in the caller's transaction (nothing when no endpoint subscribes), and
the delivery jobs are enqueued once it commits. Postgres holds each delivery's next attempt;
the scheduler's periodic `webhooks_dispatch_due` enqueues the due ones, so a retry, a job
Redis lost or a worker that died mid-attempt is picked up again: at least once.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from agentops.conversation import handoff_event_serialise
from agentops.events import audit_record, event_record
from agentops.hooks import Event
from agentops.models import Session
from agentops.webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
)
from agentops.webhooks.selectors import webhook_subscribers
from tracing.platform.egress import PostResult, egress_post
from tracing.platform.enqueue import queue_job_on_commit
from tracing.platform.errors import Conflict
from tracing.platform.logs import get_logger
from tracing.platform.types import Actor
from tracing.retention import RetentionPolicy

log = get_logger(__name__)

# Seconds from each failed attempt to the next (Standard Webhooks' suggested schedule):
# 8 attempts over about 27 hours, then the delivery is given up.
RETRY_DELAYS = (5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# An attempt holds its delivery this long: a worker that dies mid-attempt leaves it due again.
ATTEMPT_LEASE = timedelta(seconds=120)
DISPATCH_BATCH = 500


class WebhookConflict(Conflict):
    """The delivery or endpoint is not in a state that allows this."""


def webhook_secret_new() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def webhook_endpoint_create(
    *, url: str, event_types: list[str], description: str = "", actor: Actor = None
) -> tuple[WebhookEndpoint, str]:
    """Subscribe `url` to `event_types`; returns (endpoint, signing secret). The secret is
    shown once; it is stored encrypted, for signing."""
    secret = webhook_secret_new()
    endpoint = WebhookEndpoint(
        url=url,
        event_types=sorted(set(event_types)),
        description=description,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    endpoint.set_secret(secret)
    endpoint.save()
    audit_record(actor=actor, action="webhook.create", target=url[:200], events=event_types)
    return endpoint, secret


def webhook_endpoint_enable(*, endpoint: WebhookEndpoint, enabled: bool, actor: Actor) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=enabled,
        failing_since=None,
        disabled_at=None if enabled else timezone.now(),
        disabled_reason="",  # set only when the product disables a failing endpoint
    )
    audit_record(
        actor=actor,
        action="webhook.enable" if enabled else "webhook.disable",
        target=endpoint.url[:200],
    )


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor: Actor) -> None:
    audit_record(actor=actor, action="webhook.delete", target=endpoint.url[:200])
    endpoint.delete()


# -- emitting ----------------------------------------------------------------------------------
def webhook_event_emit(*, type: str, key: str, data: dict[str, Any]) -> WebhookEvent | None:
    """Record an event for every enabled endpoint subscribed to `type`, in the caller's
    transaction; its deliveries are enqueued after the commit. `key` names what happened
    (e.g. "message_42"): the event's id is derived from it, so emitting it again is a no-op.
    A failure here is logged, never raised into what emitted it."""
    try:
        if connection.in_atomic_block:  # a savepoint: a failure leaves the caller's work intact
            with transaction.atomic():
                return _emit(type=type, key=key, data=data)
        # Outside a transaction there is nothing to protect, and most events have no
        # subscriber: one statement, not BEGIN, the lookup and COMMIT.
        if not webhook_subscribers(type=type):
            return None
        with transaction.atomic():
            return _emit(type=type, key=key, data=data)
    except Exception:
        log.exception("webhook.emit_failed", type=type, key=key)
        return None


def _emit(*, type: str, key: str, data: dict[str, Any]) -> WebhookEvent | None:
    endpoints = webhook_subscribers(type=type)
    if not endpoints:
        return None
    session_id = data.get("session_id")
    if session_id and Session.objects.sandbox().filter(pk=session_id).exists():
        return None  # a draft chat, an experiment or a fork is nobody's conversation
    now = timezone.now()
    event_id = f"evt_{key}"
    payload = {"type": type, "timestamp": now.isoformat(), "data": data}
    event, created = WebhookEvent.objects.get_or_create(
        id=event_id, defaults={"type": type, "payload": payload}
    )
    if not created:
        return event
    deliveries = WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(event=event, endpoint_id=pk, next_attempt_at=now) for pk in endpoints]
    )
    webhook_deliveries_enqueue(delivery_ids=[d.pk for d in deliveries])
    return event


def webhook_deliveries_enqueue(*, delivery_ids: list[int]) -> None:
    """Queue one job per delivery once the caller commits. If Redis refuses, the deliveries
    stay due in Postgres and the scheduler's sweep enqueues them."""
    queue_job_on_commit(
        queue=settings.WEBHOOK_QUEUE,
        func="agentops.webhooks.jobs.webhook_deliver_job",
        each=[(delivery_id,) for delivery_id in delivery_ids],
        job_timeout=int(settings.WEBHOOK_TIMEOUT_SECONDS) + 30,
        result_ttl=60,
        sweep="webhooks_dispatch_due",
    )


def webhooks_dispatch_due(*, now: datetime | None = None) -> int:
    """The scheduler's sweep: enqueue the deliveries whose next attempt is due (retries,
    jobs Redis lost, attempts whose worker died). Returns how many."""
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=now, endpoint__enabled=True
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:DISPATCH_BATCH]
    )
    if due:
        webhook_deliveries_enqueue(delivery_ids=due)
    return len(due)


# -- delivering --------------------------------------------------------------------------------
def webhook_sign(*, secret: str, event_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt."""
    signature = Webhook(secret).sign(msg_id=event_id, timestamp=timestamp, data=body)
    return {
        "Content-Type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """One attempt of a due delivery (None when it is not due: done, given up, or another
    job holds it). Its outcome is stored; a failure schedules the next attempt."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event", "endpoint")
            .filter(
                pk=delivery_id,
                status=DeliveryStatus.PENDING,
                next_attempt_at__lte=now,
                endpoint__enabled=True,
            )
            .first()
        )
        if delivery is None:
            return None
        delivery.attempts += 1
        if delivery.attempts == 1:
            delivery.first_attempt_at = now
        delivery.last_attempt_at = now
        delivery.next_attempt_at = now + ATTEMPT_LEASE
        delivery.response_status, delivery.response_body, delivery.error = None, "", ""
        delivery.save(
            update_fields=[
                "attempts",
                "first_attempt_at",
                "last_attempt_at",
                "next_attempt_at",
                "response_status",
                "response_body",
                "error",
            ]
        )
    endpoint, event = delivery.endpoint, delivery.event
    body = json.dumps(event.payload, separators=(",", ":"))
    headers = webhook_sign(
        secret=endpoint.secret, event_id=event.id, timestamp=timezone.now(), body=body
    )
    result = egress_post(
        url=endpoint.url,
        content=body.encode(),
        headers=headers,
        timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
    )
    return _record(delivery=delivery, result=result)


def _record(*, delivery: WebhookDelivery, result: PostResult) -> WebhookDelivery:
    now = timezone.now()
    delivery.response_status = result.status
    delivery.response_body = result.body
    delivery.error = result.error
    fields = ["status", "next_attempt_at", "response_status", "response_body", "error"]
    if result.ok:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        fields.append("delivered_at")
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
    else:
        delivery.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS[delivery.attempts - 1])
    with transaction.atomic():
        delivery.save(update_fields=fields)
        endpoint = delivery.endpoint
        if result.ok:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        else:
            log.warning(
                "webhook.attempt_failed",
                delivery=delivery.pk,
                event_id=delivery.event_id,
                attempt=delivery.attempts,
                error=result.error,
            )
            WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
                failing_since=delivery.last_attempt_at
            )
            if delivery.status == DeliveryStatus.FAILED:
                _disable_if_failing(delivery=delivery)
    return delivery


def _disable_if_failing(*, delivery: WebhookDelivery) -> None:
    """A delivery gave up (every attempt over about a day failed): if nothing reached the
    endpoint since that delivery began either, the endpoint is down, not just one event
    refused. It is disabled (no more deliveries pile up) and the admins are alerted."""
    reason = (
        f"every delivery attempt failed since {delivery.first_attempt_at:%Y-%m-%d %H:%M} UTC "
        f"(last: {delivery.error or 'no answer'})"
    )[:500]
    disabled = (
        WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, enabled=True)
        .filter(failing_since__lte=delivery.first_attempt_at)
        .update(enabled=False, disabled_at=timezone.now(), disabled_reason=reason)
    )
    if not disabled:
        return
    url = delivery.endpoint.url
    log.error("webhook.endpoint_disabled", endpoint=delivery.endpoint_id, url=url, reason=reason)
    event_record(
        kind="alert.firing",
        data={
            "alert": "webhook endpoint disabled",
            "endpoint_id": delivery.endpoint_id,
            "message": f"Webhook endpoint {url} was disabled: {reason}",
        },
        audit="webhook.disabled",
        target=url,
        detail={"reason": reason},
    )


@transaction.atomic
def webhook_delivery_resend(*, delivery: WebhookDelivery, actor: Actor) -> WebhookDelivery:
    """Send a delivery again now (same event id: the receiver may deduplicate), whatever
    became of it; its attempts start over."""
    delivery = (
        WebhookDelivery.objects.select_for_update(of=("self",))
        .select_related("endpoint")
        .get(pk=delivery.pk)
    )
    if not delivery.endpoint.enabled:
        raise WebhookConflict("the endpoint is disabled: enable it first")
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = timezone.now()
    delivery.save(update_fields=["status", "attempts", "next_attempt_at"])
    audit_record(
        actor=actor,
        action="webhook.resend",
        target=delivery.endpoint.url[:200],
        event=delivery.event_id,
    )
    webhook_deliveries_enqueue(delivery_ids=[delivery.pk])
    return delivery


EVENT_TYPES = [t.value for t in WebhookEventType]


# -- the events the product emits: what agentops.events records, as integrators see it ------
# The announced kind -> the webhook type (None: one of several, decided below).
EMITTED = {
    "session.created": WebhookEventType.SESSION_CREATED,
    "message": WebhookEventType.MESSAGE_CREATED,
    "run.status": None,
    "approval.requested": WebhookEventType.APPROVAL_REQUESTED,
    "handoff.created": WebhookEventType.HANDOFF_CREATED,
    "handoff.claimed": WebhookEventType.HANDOFF_CLAIMED,
    "handoff.resolved": WebhookEventType.HANDOFF_CLOSED,
}
RUN_ENDINGS = ("succeeded", "failed", "handed_off")


def webhook_event_on_record(event: Event) -> None:
    """A hook subscriber (WebhooksConfig.ready): emit the webhook of a recorded event, in its
    transaction. Its key names what happened, so the same event is never sent twice."""
    data: dict[str, Any] = dict(event.data)
    if event.kind == "session.created" and event.session_id is not None:
        if not webhook_subscribers(type=WebhookEventType.SESSION_CREATED):
            return  # nobody listens: the session is not read for nothing
        session = Session.objects.select_related("agent").get(pk=event.session_id)
        webhook_event_emit(
            type=WebhookEventType.SESSION_CREATED,
            key=f"session_{session.pk}",
            data={
                "session_id": str(session.pk),
                "agent": session.agent.slug,
                "user": session.external_user,
                "title": session.title,
            },
        )
    elif event.kind == "message":
        message = data["message"]
        if message["role"] == "operator" or (message["role"] == "assistant" and message["content"]):
            webhook_event_emit(
                type=WebhookEventType.MESSAGE_CREATED,
                key=f"message_{message['id']}",
                data={"session_id": str(event.session_id), **message},
            )
    elif event.kind == "run.status" and event.run is not None:
        run = event.run
        if run.status in RUN_ENDINGS:
            webhook_event_emit(
                type=f"run.{run.status}",
                key=f"run_{run.pk}_{run.status}_{run.epoch}",
                data={k: v for k, v in data.items() if k != "kind"},
            )
    elif event.kind == "approval.requested":
        webhook_event_emit(
            type=WebhookEventType.APPROVAL_REQUESTED,
            key=f"approval_{data['tool_call_id']}",
            data={
                "run_id": str(event.run.pk) if event.run else data.get("run_id"),
                "session_id": str(event.session_id),
                **data,
                "arguments": event.detail.get("arguments"),
            },
        )
    elif event.kind in EMITTED and event.handoff is not None:
        type_ = EMITTED[event.kind]
        handoff = event.handoff
        # Created and closed happen once per handoff; claimed as often as it changes hands.
        once = event.kind in ("handoff.created", "handoff.resolved")
        key = f"handoff_{handoff.pk}_{str(type_).split('.')[1]}_"
        webhook_event_emit(
            type=str(type_),
            key=key + ("0" if once else secrets.token_hex(6)),
            data={
                **handoff_event_serialise(handoff),
                **{k: v for k, v in data.items() if k in ("operator", "resolution")},
            },
        )


def webhooks_purge(policy: RetentionPolicy) -> int:
    """Retention (tracing's job): deliveries done before the traces' cutoff, then the events
    left without any delivery. Pending deliveries stay whatever their age."""
    from tracing.retention import delete_in_batches

    deleted = delete_in_batches(
        table=WebhookDelivery._meta.db_table,
        where="created_at < %s AND status <> 'pending'",
        params=[policy.default_cutoff],
        batch_size=policy.batch_size,
    )
    return deleted + delete_in_batches(
        table=WebhookEvent._meta.db_table,
        where=f"created_at < %s AND NOT EXISTS (SELECT 1 FROM {WebhookDelivery._meta.db_table} d"  # noqa: S608
        f" WHERE d.event_id = {WebhookEvent._meta.db_table}.id)",
        params=[policy.default_cutoff],
        batch_size=policy.batch_size,
    )
