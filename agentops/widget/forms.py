from __future__ import annotations

from typing import Any

from django import forms

from agentops.models import Agent
from agentops.widget.services import origins_clean
from tracing.platform.errors import Invalid


class WidgetKeyForm(forms.Form):
    name = forms.CharField(max_length=100)
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.live().order_by("slug"),
        to_field_name="slug",
        help_text="Agents with a published version (an unpublished one runs only in its draft chat).",
    )
    allowed_origins = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line, e.g. https://shop.example.com (scheme, host and port only).",
    )
    user_messages_per_minute = forms.IntegerField(min_value=1, max_value=10_000, initial=10)
    key_messages_per_minute = forms.IntegerField(min_value=1, max_value=1_000_000, initial=300)

    def clean_allowed_origins(self) -> list[str]:
        try:
            return origins_clean(text=self.cleaned_data["allowed_origins"])
        except Invalid as exc:
            raise forms.ValidationError(exc.message) from exc

    def values(self) -> dict[str, Any]:
        return dict(self.cleaned_data)
