from __future__ import annotations

from urllib.parse import urlparse

from django import forms
from django.conf import settings

from agentops.webhooks.models import WebhookEventType

# Every event as the receiver sees it named, then what it means, in one style.
EVENT_MEANINGS = {
    WebhookEventType.MESSAGE_CREATED: "an agent or an operator wrote a message",
    WebhookEventType.RUN_SUCCEEDED: "a run answered",
    WebhookEventType.RUN_FAILED: "a run failed",
    WebhookEventType.RUN_HANDED_OFF: "a run handed the conversation to a person",
    WebhookEventType.HANDOFF_CREATED: "a conversation entered the queue",
    WebhookEventType.HANDOFF_CLAIMED: "an operator took a conversation",
    WebhookEventType.HANDOFF_CLOSED: "an operator closed a conversation or handed it back",
    WebhookEventType.APPROVAL_REQUESTED: "a tool call waits for approval",
    WebhookEventType.SESSION_CREATED: "a conversation started",
}
EVENT_CHOICES = [(t.value, f"{t.value}: {EVENT_MEANINGS[t]}") for t in WebhookEventType]


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(
        max_length=500,
        label="URL",
        assume_scheme="https",
        help_text="An HTTPS address that accepts POST requests.",
    )
    description = forms.CharField(max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        choices=EVENT_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        label="Events",
    )

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        scheme = urlparse(url).scheme
        # Plain HTTP only for a development install (local receivers); the body is signed
        # but not encrypted, and conversations are personal data.
        if scheme != "https" and not (settings.DEBUG and scheme == "http"):
            raise forms.ValidationError("Use an https:// address.")
        return url
