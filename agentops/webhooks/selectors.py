"""Reads of the webhooks feature."""

from __future__ import annotations

from django.db import connection
from django.db.models import QuerySet

from agentops.webhooks.models import WebhookDelivery, WebhookEndpoint


def webhook_endpoints() -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.order_by("-enabled", "created_at", "id")


def webhook_endpoints_disabled() -> QuerySet[WebhookEndpoint]:
    """Endpoints the product disabled because they kept failing (not those an admin turned off)."""
    return WebhookEndpoint.objects.filter(enabled=False).exclude(disabled_reason="")


def webhook_deliveries(
    *, endpoint_id: int | None = None, status: str = "", limit: int = 100
) -> QuerySet[WebhookDelivery]:
    deliveries = WebhookDelivery.objects.select_related("event", "endpoint").order_by(
        "-created_at", "-id"
    )
    if endpoint_id is not None:
        deliveries = deliveries.filter(endpoint_id=endpoint_id)
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries[:limit]


def webhook_subscribers(*, type: str) -> list[int]:
    """The enabled endpoints subscribed to `type`, asked on every event the product emits: one
    small statement in SQL (the ORM's query, reading every endpoint's list to filter it here,
    cost six times the CPU). Not cached in the process: a subscription made or removed in
    another process must count at once, and checking a cache's freshness (a version in
    Redis) costs a round trip of its own, about what this statement does."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM agentops_webhookendpoint WHERE enabled AND event_types ? %s"
            " ORDER BY id",
            [type],
        )
        return [pk for (pk,) in cursor.fetchall()]
