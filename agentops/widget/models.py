from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from tracing.platform.crypto import decrypt_text, encrypt_text


class WidgetKey(models.Model):
    """A publishable key for the embeddable chat: talk to one agent, as an end user, from the
    listed host origins. The key is public (it is in the host page); the secret signs user ids
    (identity verification) and is stored encrypted."""

    agent = models.ForeignKey("agentops.Agent", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    public_key = models.CharField(max_length=64, unique=True, editable=False)
    secret_ciphertext = models.TextField(editable=False)
    allowed_origins = models.JSONField(
        default=list, help_text="Host page origins (scheme://host[:port]) that may embed it."
    )
    enabled = models.BooleanField(default=True)
    user_messages_per_minute = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1)]
    )
    key_messages_per_minute = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(1)]
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_key[:10]}…)"

    @property
    def secret(self) -> str:
        return decrypt_text(self.secret_ciphertext)

    def set_secret(self, value: str) -> None:
        self.secret_ciphertext = encrypt_text(value)
