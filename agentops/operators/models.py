"""Working a conversation: canned replies, labels and private notes. Loaded by the inbox's app
(agentops.operators.apps); the tables stay the `agentops` app's (app_label), as its
migrations made them."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

shortcut_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,39}$", "Use lowercase letters, digits and dashes (at most 40)."
)


class LabelColour(models.TextChoices):
    """A palette (the CSP allows no inline styles, so each colour is a class in the CSS)."""

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    GREEN = "green"
    BLUE = "blue"
    PURPLE = "purple"
    GREY = "grey"


class CannedReply(models.Model):
    """A saved answer an operator inserts with `/shortcut` in the reply box. Personal (an
    `owner`), for a `team`, or for every operator (neither)."""

    shortcut = models.CharField(max_length=40, validators=[shortcut_validator])
    title = models.CharField(max_length=200)
    content = models.TextField(max_length=4000)
    team = models.ForeignKey(
        "agentops.Team",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="canned_replies",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="canned_replies",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "agentops"
        ordering = ["shortcut"]
        verbose_name_plural = "canned replies"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(team__isnull=True) | models.Q(owner__isnull=True),
                name="cannedreply_team_or_owner",
            ),
            models.UniqueConstraint(
                fields=["shortcut", "team", "owner"],
                name="cannedreply_shortcut_per_scope",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return f"/{self.shortcut}"

    @property
    def scope(self) -> str:
        """ "personal", "team:<slug>" or "everyone" (the form's choice)."""
        if self.owner_id:
            return "personal"
        return f"team:{self.team.slug}" if self.team_id and self.team else "everyone"


class Label(models.Model):
    """A label on conversations; operators create them on the fly."""

    name = models.CharField(max_length=50)
    colour = models.CharField(max_length=10, blank=True, default="", choices=LabelColour.choices)
    sessions = models.ManyToManyField("agentops.Session", blank=True, related_name="labels")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "agentops"
        ordering = ["name"]
        constraints = [models.UniqueConstraint(Lower("name"), name="label_name_ci")]

    def __str__(self) -> str:
        return self.name


class PrivateNote(models.Model):
    """A note between operators in a conversation's thread. Never a Message: nothing that
    reads messages (the model's context, the API's conversation, the widget, the session
    stream, webhooks) can carry it to the end user or the agent."""

    session = models.ForeignKey(
        "agentops.Session", on_delete=models.CASCADE, related_name="private_notes"
    )
    handoff = models.ForeignKey(
        "agentops.Handoff",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="private_notes",
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    content = models.TextField(blank=True, default="")
    # Set on the note a transfer left: whom it went to ("operator bob", "team billing").
    transfer_to = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "agentops"
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["session", "created_at"])]

    def __str__(self) -> str:
        return f"note {self.pk} on {self.session_id}"
