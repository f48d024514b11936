"""Webhook subscriptions, the events they get, and one delivery per (event, endpoint).

Loaded by the webhooks app (agentops.webhooks.apps); the tables stay the `agentops` app's
(app_label), as its migrations made them."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tracing.platform.crypto import decrypt_text, encrypt_text


class WebhookEventType(models.TextChoices):
    MESSAGE_CREATED = "message.created", "message.created (agent and operator messages)"
    RUN_SUCCEEDED = "run.succeeded"
    RUN_FAILED = "run.failed"
    RUN_HANDED_OFF = "run.handed_off"
    HANDOFF_CREATED = "handoff.created"
    HANDOFF_CLAIMED = "handoff.claimed"
    HANDOFF_CLOSED = "handoff.closed", "handoff.closed (closed or handed back)"
    APPROVAL_REQUESTED = "approval.requested"
    SESSION_CREATED = "session.created"


class WebhookEndpoint(models.Model):
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True, default="")
    event_types = models.JSONField(default=list, help_text="The event types it receives.")
    secret_ciphertext = models.TextField(editable=False)
    enabled = models.BooleanField(default=True)
    # Set at the first failed attempt of a streak, cleared by any success.
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "agentops"
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.url

    @property
    def secret(self) -> str:
        return decrypt_text(self.secret_ciphertext)

    def set_secret(self, value: str) -> None:
        self.secret_ciphertext = encrypt_text(value)


class WebhookEvent(models.Model):
    """An event as sent: `id` is the `webhook-id` of every delivery and retry of it, derived
    from what happened (a message, a run's ending, …), so it is emitted once."""

    id = models.CharField(primary_key=True, max_length=100)
    type = models.CharField(max_length=40, choices=WebhookEventType.choices)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "agentops"

    def __str__(self) -> str:
        return self.id


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # waiting for its next attempt (next_attempt_at)
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # every attempt failed: given up


class WebhookDelivery(models.Model):
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    error = models.CharField(max_length=500, blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "agentops"
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=["endpoint", "-created_at"]),
            models.Index(fields=["-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.endpoint_id} ({self.status})"
