"""The people's forms: a role, a new person, an invitation and its acceptance, a person's teams,
a team with its hours and policy."""

from __future__ import annotations

import zoneinfo
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from agentops.auth import ROLES
from agentops.models import (
    MAX_CAP,
    MAX_POLICY_MINUTES,
    WEEKDAYS,
    AssignmentMode,
    Team,
    slug_validator,
)
from agentops.people.selectors import team_get, teams_all

ROLE_LABELS = {
    "": "none (cannot use the console)",
    "viewer": "viewer: reads everything",
    "operator": "operator: also writes, takes conversations over",
    "admin": "admin: also tools, users, settings",
}
ROLE_CHOICES = [(role, ROLE_LABELS[role]) for role in ("", *ROLES)]


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES, required=False)


class UserCreateForm(UserCreationForm):
    role = forms.ChoiceField(choices=ROLE_CHOICES, required=False, initial="viewer")


class TeamsField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.name)


class InviteForm(forms.Form):
    role = forms.ChoiceField(
        choices=[(r, ROLE_LABELS[r]) for r in ROLES], initial="operator", widget=forms.RadioSelect
    )
    teams = TeamsField(
        queryset=teams_all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    note = forms.CharField(
        max_length=200, required=False, help_text="Who it is for (shown in the list)."
    )


class UserTeamsForm(forms.Form):
    teams = forms.ModelMultipleChoiceField(queryset=teams_all(), required=False)


class AcceptInvitationForm(UserCreationForm):
    """The invited person picks a username and password; the role comes from the invitation."""


class TeamForm(forms.Form):
    slug = forms.CharField(max_length=64, validators=[slug_validator])
    name = forms.CharField(max_length=200)
    timezone = forms.ChoiceField(
        choices=[(z, z) for z in sorted(zoneinfo.available_timezones())], initial="UTC"
    )
    members = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.order_by("username"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    assignment_mode = forms.ChoiceField(
        choices=AssignmentMode.choices,
        initial=AssignmentMode.MANUAL,
        required=False,
        help_text="Automatic: among members who are online and under their cap.",
    )
    concurrent_cap = forms.IntegerField(
        min_value=1,
        max_value=MAX_CAP,
        initial=3,
        required=False,
        label="Conversations per operator at once",
        help_text="A person's own cap (People page) wins over this one.",
    )
    escalate_after_minutes = forms.IntegerField(
        min_value=1,
        max_value=MAX_POLICY_MINUTES,
        required=False,
        label="Escalate unclaimed handoffs after (minutes)",
        help_text="Empty: never.",
    )
    escalate_to = forms.ModelChoiceField(
        queryset=teams_all(),
        required=False,
        empty_label="the admins",
        label="Escalate to",
    )
    first_response_minutes = forms.IntegerField(
        min_value=1,
        max_value=MAX_POLICY_MINUTES,
        required=False,
        label="First response target (minutes)",
        help_text="From the handoff to the first operator reply. Empty: none.",
    )
    resolution_minutes = forms.IntegerField(
        min_value=1,
        max_value=MAX_POLICY_MINUTES,
        required=False,
        label="Resolution target (minutes)",
        help_text="From the handoff to its close or hand-back. Empty: none.",
    )

    POLICY_FIELDS = (
        "assignment_mode",
        "concurrent_cap",
        "escalate_after_minutes",
        "escalate_to",
        "first_response_minutes",
        "resolution_minutes",
    )

    def __init__(self, *args: Any, team: Team | None = None, **kwargs: Any) -> None:
        if team is not None:
            kwargs.setdefault(
                "initial",
                {
                    "slug": team.slug,
                    "name": team.name,
                    "timezone": team.timezone,
                    "members": list(team.members.all()),
                    **{name: getattr(team, name) for name in self.POLICY_FIELDS},
                    **{
                        f"{day}_{edge}": team.working_hours[day][i]
                        for day in team.working_hours
                        for i, edge in enumerate(("start", "end"))
                    },
                },
            )
        super().__init__(*args, **kwargs)
        self.team = team
        for day in WEEKDAYS:
            for edge in ("start", "end"):
                self.fields[f"{day}_{edge}"] = forms.TimeField(
                    required=False, widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
                )

    def day_fields(self) -> list[tuple[str, Any, Any]]:
        return [(day, self[f"{day}_start"], self[f"{day}_end"]) for day in WEEKDAYS]

    def clean_slug(self) -> str:
        slug: str = self.cleaned_data["slug"]
        other = team_get(slug=slug)
        if other is not None and (self.team is None or other.pk != self.team.pk):
            raise forms.ValidationError("Another team has this slug.")
        return slug

    def clean_escalate_to(self) -> Team | None:
        to: Team | None = self.cleaned_data.get("escalate_to")
        if to is not None and self.team is not None and to.pk == self.team.pk:
            raise forms.ValidationError("A team cannot escalate to itself; choose the admins.")
        return to

    def policy(self) -> dict[str, Any]:
        """Left out (an older client): manual, and the model's default cap."""
        policy = {name: self.cleaned_data.get(name) for name in self.POLICY_FIELDS}
        policy["assignment_mode"] = policy["assignment_mode"] or AssignmentMode.MANUAL
        policy["concurrent_cap"] = (
            policy["concurrent_cap"] or Team._meta.get_field("concurrent_cap").get_default()
        )
        return policy

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        hours: dict[str, list[str]] = {}
        for day in WEEKDAYS:
            start, end = data.get(f"{day}_start"), data.get(f"{day}_end")
            if start is None and end is None:
                continue  # a day off
            if start is None or end is None:
                self.add_error(f"{day}_start", "Give both the start and the end, or neither.")
            elif start >= end:
                self.add_error(f"{day}_end", "The shift must end after it starts.")
            else:
                hours[day] = [start.strftime("%H:%M"), end.strftime("%H:%M")]
        data["working_hours"] = hours
        return data
