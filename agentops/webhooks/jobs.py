"""RQ entry points of the webhooks: thin, take ids, call one service."""

from __future__ import annotations

from agentops.webhooks.services import webhook_delivery_attempt, webhooks_dispatch_due


def webhook_deliver_job(delivery_id: int) -> str:
    delivery = webhook_delivery_attempt(delivery_id=delivery_id)
    return "not due" if delivery is None else delivery.status


def webhooks_dispatch_due_job() -> int:
    return webhooks_dispatch_due()
