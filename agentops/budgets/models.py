"""Budgets: how much an agent, an end user, an API key or a widget key may spend (runs per
minute, tokens or cost per day or month), what each has spent in the current window, and
what each run in flight holds reserved against them.

Loaded by the budgets app (agentops.budgets.apps); the tables are the `agentops` app's
(app_label), as its migrations made them."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models


class BudgetScope(models.TextChoices):
    AGENT = "agent", "Agent"
    END_USER = "end_user", "End user"
    API_KEY = "api_key", "API key"
    WIDGET_KEY = "widget_key", "Widget key"


class BudgetMetric(models.TextChoices):
    RUNS = "runs", "Runs"
    TOKENS = "tokens", "Tokens"
    COST = "cost", "Cost (USD)"


class BudgetPeriod(models.TextChoices):
    MINUTE = "minute", "per minute"
    DAY = "day", "per day (UTC)"
    MONTH = "month", "per month (UTC)"


class BudgetAction(models.TextChoices):
    REFUSE = "refuse", "Refuse new runs (429 with Retry-After)"
    HANDOFF = "handoff", "Hand the conversation to a person"


class Budget(models.Model):
    """A limit on what one subject spends in a window. `subject` names one (an end user's
    id, a key's id); empty, the limit applies to each subject of the scope separately. With
    `agent`, only conversations with that agent count."""

    name = models.CharField(max_length=100, unique=True)
    scope = models.CharField(max_length=12, choices=BudgetScope.choices)
    agent = models.ForeignKey(
        "agentops.Agent", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    subject = models.CharField(max_length=200, blank=True, default="")
    metric = models.CharField(max_length=8, choices=BudgetMetric.choices)
    period = models.CharField(max_length=8, choices=BudgetPeriod.choices)
    limit = models.DecimalField(max_digits=20, decimal_places=6, validators=[MinValueValidator(0)])
    on_limit = models.CharField(
        max_length=8, choices=BudgetAction.choices, default=BudgetAction.REFUSE
    )
    enabled = models.BooleanField(default=True)
    # What one run is expected to spend (tokens or cost), learned as runs settle: what a run
    # reserves when it is admitted, so runs started at once cannot all pass a nearly spent
    # budget. 0: nothing learned yet (a run then reserves all that is left).
    run_estimate = models.DecimalField(max_digits=20, decimal_places=6, default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "agentops"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BudgetUsage(models.Model):
    """What one subject spent (`used`) and what runs in flight hold (`reserved`) in one
    window of a budget."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="usage")
    subject = models.CharField(max_length=200)
    window_start = models.DateTimeField()
    used = models.DecimalField(max_digits=20, decimal_places=6, default=0)
    reserved = models.DecimalField(max_digits=20, decimal_places=6, default=0)

    class Meta:
        app_label = "agentops"
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "subject", "window_start"], name="budget_usage_window_unique"
            )
        ]
        indexes = [models.Index(fields=["window_start"], name="budget_usage_window_idx")]

    def __str__(self) -> str:
        return f"{self.budget_id}:{self.subject}@{self.window_start:%Y-%m-%d %H:%M}"


class BudgetHold(models.Model):
    """A run's reservation against one window of a token or cost budget: `remaining` is
    released as the run spends and when it ends; `spent` teaches the budget a run's size."""

    run = models.ForeignKey("agentops.Run", on_delete=models.CASCADE, related_name="+")
    usage = models.ForeignKey(BudgetUsage, on_delete=models.CASCADE, related_name="holds")
    metric = models.CharField(max_length=8, choices=BudgetMetric.choices)
    remaining = models.DecimalField(max_digits=20, decimal_places=6, default=0)
    spent = models.DecimalField(max_digits=20, decimal_places=6, default=0)

    class Meta:
        app_label = "agentops"
        indexes = [models.Index(fields=["run"], name="budget_hold_run_idx")]

    def __str__(self) -> str:
        return f"run {self.run_id} holds {self.remaining} on {self.usage_id}"
