from __future__ import annotations

from typing import Any

from django import forms

from agentops.budgets.models import BudgetAction, BudgetMetric, BudgetPeriod, BudgetScope
from agentops.models import Agent


class BudgetForm(forms.Form):
    name = forms.CharField(max_length=100)
    scope = forms.ChoiceField(choices=BudgetScope.choices, label="Counts the runs of")
    agent: forms.ModelChoiceField = forms.ModelChoiceField(
        queryset=None,
        required=False,
        to_field_name="slug",
        help_text="Only this agent's conversations count. Empty: every agent's.",
    )
    subject = forms.CharField(
        max_length=200,
        required=False,
        label="Which one",
        help_text="An end user's id, or a key's id. Empty: each one has the limit separately.",
    )
    metric = forms.ChoiceField(choices=BudgetMetric.choices)
    period = forms.ChoiceField(
        choices=BudgetPeriod.choices, help_text="Runs per minute; tokens and cost per day or month."
    )
    limit = forms.DecimalField(min_value=0, max_digits=20, decimal_places=6)
    on_limit = forms.ChoiceField(choices=BudgetAction.choices, label="At the limit")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = Agent.objects.order_by("slug")  # type: ignore[attr-defined]
