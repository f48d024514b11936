from __future__ import annotations

from django import forms

from agentops.models import ModelEndpoint
from tracing.models import ModelPrice


class EndpointForm(forms.ModelForm):
    base_url = forms.URLField(
        label="Base URL",
        max_length=500,
        assume_scheme="https",
        help_text="OpenAI-compatible API root, e.g. https://api.openai.com/v1 or "
        "http://127.0.0.1:11434/v1.",
    )
    api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only: stored encrypted, never shown again. Leave empty to keep the "
        "stored one.",
    )
    clear_api_key = forms.BooleanField(
        required=False, label="Remove the stored API key (for endpoints that need none)"
    )

    class Meta:
        model = ModelEndpoint
        fields = [
            "name",
            "base_url",
            "default_model",
            "timeout_seconds",
            "breaker_cooldown_seconds",
        ]
        help_texts = {
            "timeout_seconds": "Per model call.",
        }

    def clean(self) -> dict:
        data = super().clean() or {}
        if data.get("api_key") and data.get("clear_api_key"):
            self.add_error("clear_api_key", "Either give a new key or remove the stored one.")
        return data


class EndpointTestForm(forms.Form):
    model = forms.CharField(
        required=False, max_length=200, help_text="Empty: the endpoint's default model."
    )


class PriceForm(forms.ModelForm):
    class Meta:
        model = ModelPrice
        fields = ["model", "input_per_million", "output_per_million", "as_of"]
        labels = {
            "input_per_million": "Input $ / 1M tokens",
            "output_per_million": "Output $ / 1M tokens",
        }
        help_texts = {
            "model": "A model name, or a prefix: gpt-4o matches gpt-4o-2024-08-06 (the longest "
            "matching prefix wins).",
        }
        widgets = {"as_of": forms.DateInput(attrs={"type": "date"})}

    def clean_input_per_million(self):  # type: ignore[no-untyped-def]
        return _not_negative(self.cleaned_data["input_per_million"])

    def clean_output_per_million(self):  # type: ignore[no-untyped-def]
        return _not_negative(self.cleaned_data["output_per_million"])


def _not_negative(value):  # type: ignore[no-untyped-def]
    if value is not None and value < 0:
        raise forms.ValidationError("A price cannot be negative.")
    return value
