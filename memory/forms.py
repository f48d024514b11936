from __future__ import annotations

from typing import Any

from django import forms

from memory.models import MemoryKind
from memory.services import MAX_TEXT_CHARS, MAX_USER_KEY_CHARS

KIND_FILTER = [("", "any kind"), *MemoryKind.choices]


class MemoryFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=500, label="Search (by meaning)")
    kind = forms.ChoiceField(required=False, choices=KIND_FILTER)
    scope = forms.ChoiceField(
        required=False,
        choices=[("", "all scopes"), ("agent", "agent-wide only"), ("user", "one user")],
    )
    user = forms.CharField(required=False, max_length=MAX_USER_KEY_CHARS, label="User")
    pinned = forms.ChoiceField(
        required=False, choices=[("", "pinned or not"), ("yes", "pinned"), ("no", "not pinned")]
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("scope") == "user" and not data.get("user", "").strip():
            self.add_error("user", "Name the user whose memories to show.")
        return data


class MemoryEditForm(forms.Form):
    text = forms.CharField(max_length=MAX_TEXT_CHARS, widget=forms.Textarea(attrs={"rows": 4}))
    importance = forms.FloatField(min_value=0.0, max_value=1.0)


class MemoryCreateForm(forms.Form):
    text = forms.CharField(max_length=MAX_TEXT_CHARS, widget=forms.Textarea(attrs={"rows": 3}))
    kind = forms.ChoiceField(choices=MemoryKind.choices, initial=MemoryKind.FACT)
    user_key = forms.CharField(
        required=False,
        max_length=MAX_USER_KEY_CHARS,
        label="User",
        help_text="Empty: an agent-wide memory, for every user.",
    )
    importance = forms.FloatField(min_value=0.0, max_value=1.0, initial=0.5)
