from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.utils import timezone

from agentops.models import RunStatus
from tracing.platform.failures import FailureClass

WINDOWS = {
    "15m": ("last 15 minutes", timedelta(minutes=15)),
    "1h": ("last hour", timedelta(hours=1)),
    "6h": ("last 6 hours", timedelta(hours=6)),
    "24h": ("last 24 hours", timedelta(days=1)),
    "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
}


def window_since(key: str, now: datetime | None = None) -> datetime | None:
    window = WINDOWS.get(key)
    return (now or timezone.now()) - window[1] if window else None


def _agent_choices(slugs: list[str]) -> list[tuple[str, str]]:
    return [("", "all agents"), *[(s, s) for s in slugs]]


class VersionFilterMixin(forms.Form):
    """An agent version number: numbers are per agent, so it needs an agent chosen."""

    version = forms.IntegerField(
        required=False,
        min_value=1,
        label="Version",
        widget=forms.NumberInput(attrs={"placeholder": "any", "min": 1}),
    )

    def clean(self) -> dict:
        data = super().clean() or {}
        if data.get("version") and not data.get("agent"):
            self.add_error("version", "Pick an agent: version numbers are per agent.")
        return data


class RunFilterForm(VersionFilterMixin, forms.Form):
    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        widget=forms.TextInput(
            attrs={"placeholder": "session or run id, or end user", "type": "search"}
        ),
    )
    agent = forms.ChoiceField(required=False)
    status = forms.ChoiceField(required=False, choices=[("", "any status"), *RunStatus.choices])
    error = forms.ChoiceField(
        required=False,
        label="Error class",
        choices=[("", "any error"), *[(c.value, c.value) for c in FailureClass]],
    )
    window = forms.ChoiceField(
        required=False,
        label="Created",
        choices=[("", "any time"), *[(k, v[0]) for k, v in WINDOWS.items()]],
    )
    source = forms.ChoiceField(
        required=False,
        label="Source",
        choices=[
            ("", "conversations"),
            ("experiments", "sandbox runs (experiments, draft chats, forks)"),
            ("all", "both"),
        ],
    )

    def __init__(self, *args, agents: list[str], **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = _agent_choices(agents)  # type: ignore[attr-defined]


class ForkForm(forms.Form):
    """Fork a run at the end of a step (runtime/services.py `run_fork`)."""

    step = forms.IntegerField(min_value=0)
    content = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="The message of this step; change it to go on from the edited one.",
    )
    allow_side_effects = forms.BooleanField(
        required=False,
        label="Let non-idempotent tools run after the fork point",
        help_text="Otherwise they are answered from this run's recording of the same call, "
        "or refused.",
    )
    agent_version = forms.IntegerField(required=False, min_value=1, label="Agent version")
    model = forms.CharField(
        required=False, max_length=200, help_text="Empty: the version's own model."
    )

    def clean_content(self) -> str:
        # Browsers send a textarea's line breaks as CRLF: an untouched message is not an edit.
        return str(self.cleaned_data["content"]).replace("\r\n", "\n")


class FailureFilterForm(VersionFilterMixin, forms.Form):
    agent = forms.ChoiceField(required=False)
    window = forms.ChoiceField(
        required=False,
        label="Created",
        initial="7d",
        choices=[*[(k, v[0]) for k, v in WINDOWS.items()], ("all", "any time")],
    )

    def __init__(self, *args, agents: list[str], **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = _agent_choices(agents)  # type: ignore[attr-defined]


class MetricsFilterForm(VersionFilterMixin, forms.Form):
    window = forms.ChoiceField(
        required=False, initial="24h", choices=[(k, v[0]) for k, v in WINDOWS.items()]
    )
    agent = forms.ChoiceField(required=False)

    def __init__(self, *args, agents: list[str], **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = _agent_choices(agents)  # type: ignore[attr-defined]
