"""The canned reply form: its scopes are those the user may write to."""

from __future__ import annotations

from typing import Any

from django import forms

from agentops.auth import has_role
from agentops.operators.canned.placeholders import PLACEHOLDERS, placeholders_unknown
from agentops.operators.models import CannedReply, shortcut_validator
from agentops.people.selectors import teams_all


def scope_choices(*, user: Any) -> list[tuple[str, str]]:
    """Where the user may file a canned reply: for themselves, their teams (admins: any
    team), every operator (admins)."""
    choices = [("personal", "Personal (only you)")]
    teams = teams_all()
    if not has_role(user, "admin"):
        teams = teams.filter(members=user)
    choices += [(f"team:{t.slug}", f"Team {t.name}") for t in teams]
    if has_role(user, "admin"):
        choices.append(("everyone", "Every operator"))
    return choices


class CannedReplyForm(forms.Form):
    shortcut = forms.CharField(
        max_length=40,
        validators=[shortcut_validator],
        help_text="Typed after / in the reply box, e.g. refund-policy.",
    )
    title = forms.CharField(max_length=200)
    content = forms.CharField(
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="Placeholders: "
        + ", ".join("{{ " + name + " }}" for name in PLACEHOLDERS)
        + ". A fallback for an empty value: {{ user.name | there }}.",
    )
    scope = forms.ChoiceField(choices=[])

    def __init__(self, *args: Any, user: Any, reply: CannedReply | None = None, **kwargs: Any):
        if reply is not None:
            kwargs.setdefault(
                "initial",
                {
                    "shortcut": reply.shortcut,
                    "title": reply.title,
                    "content": reply.content,
                    "scope": reply.scope,
                },
            )
        super().__init__(*args, **kwargs)
        choices = scope_choices(user=user)
        if reply is not None and reply.scope not in dict(choices):
            choices.append((reply.scope, reply.scope))
        scope = self.fields["scope"]
        assert isinstance(scope, forms.ChoiceField)
        scope.choices = choices

    def clean_content(self) -> str:
        content: str = self.cleaned_data["content"]
        unknown = placeholders_unknown(text=content)
        if unknown:
            known = ", ".join("{{ " + n + " }}" for n in PLACEHOLDERS)
            raise forms.ValidationError(
                f"Unknown placeholder {', '.join('{{ ' + n + ' }}' for n in unknown)}; use {known}."
            )
        return content
