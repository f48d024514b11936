"""A label's name and colour (admins change them on the labels page)."""

from __future__ import annotations

from django import forms

from agentops.operators.models import LabelColour


class LabelForm(forms.Form):
    name = forms.CharField(max_length=50)
    colour = forms.ChoiceField(required=False, choices=[("", "no colour"), *LabelColour.choices])
