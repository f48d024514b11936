from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from agentops.auth import ROLES

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
