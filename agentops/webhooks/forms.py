from __future__ import annotations

from urllib.parse import urlparse

from django import forms
from django.conf import settings

from agentops.webhooks.models import WebhookEventType


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(
        max_length=500,
        label="URL",
        assume_scheme="https",
        help_text="An HTTPS address that accepts POST requests.",
    )
    description = forms.CharField(max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        choices=WebhookEventType.choices,
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
