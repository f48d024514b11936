"""Reads of budgets: the list, spend against each by window, the fullest (the alert gauge)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from agentops.budgets.models import Budget, BudgetPeriod, BudgetUsage
from agentops.budgets.services import window_start


def budgets_list(*, agent_id: int | None = None) -> QuerySet[Budget]:
    """Every budget, or those that count an agent's runs (its own and those of all agents)."""
    budgets = Budget.objects.select_related("agent").order_by("name")
    if agent_id is not None:
        budgets = budgets.filter(Q(agent_id=agent_id) | Q(agent__isnull=True))
    return budgets


def budget_get(*, budget_id: int) -> Budget | None:
    return Budget.objects.select_related("agent").filter(pk=budget_id).first()


@dataclass(frozen=True)
class WindowSpend:
    """What one subject spent in one window of a budget, against its limit."""

    subject: str
    window_start: datetime
    used: Decimal
    reserved: Decimal
    limit: Decimal

    @property
    def percent(self) -> float:
        return float(self.used / self.limit * 100) if self.limit else 100.0


@dataclass(frozen=True)
class BudgetSpend:
    budget: Budget
    current: list[WindowSpend]  # this window, fullest subject first
    windows: list[WindowSpend]  # by window (a day, a month), newest first, all subjects summed


def budget_spend(*, budgets: list[Budget], windows: int = 14) -> list[BudgetSpend]:
    """For each budget: its current window per subject, and its last `windows` windows (a
    per-day budget: by day). Two statements whatever the number of budgets."""
    if not budgets:
        return []
    now = timezone.now()
    ids = [b.pk for b in budgets]
    starts = {b.pk: window_start(period=b.period, now=now) for b in budgets}
    current: dict[int, list[WindowSpend]] = {b.pk: [] for b in budgets}
    limits = {b.pk: b.limit for b in budgets}
    for usage in BudgetUsage.objects.filter(
        budget_id__in=ids, window_start__gte=min(starts.values())
    ).order_by("-used"):
        if usage.window_start == starts[usage.budget_id]:
            current[usage.budget_id].append(
                WindowSpend(
                    usage.subject,
                    usage.window_start,
                    usage.used,
                    usage.reserved,
                    limits[usage.budget_id],
                )
            )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT budget_id, window_start, SUM(used), SUM(reserved) FROM (
                SELECT budget_id, window_start, used, reserved,
                       DENSE_RANK() OVER (PARTITION BY budget_id ORDER BY window_start DESC) AS n
                  FROM agentops_budgetusage WHERE budget_id = ANY(%s)
            ) AS ranked WHERE n <= %s GROUP BY budget_id, window_start
            ORDER BY budget_id, window_start DESC
            """,
            [ids, windows],
        )
        rows = cursor.fetchall()
    by_window: dict[int, list[WindowSpend]] = {b.pk: [] for b in budgets}
    for budget_id, start, used, reserved in rows:
        by_window[budget_id].append(WindowSpend("", start, used, reserved, limits[budget_id]))
    return [BudgetSpend(b, current[b.pk], by_window[b.pk]) for b in budgets]


def budget_fullest(agent: str) -> float | None:
    """The alert gauge: the highest share (%) of its limit any subject has used in the current
    window of an enabled token or cost budget (or runs budget), of the agent's budgets by slug
    ("" for every budget). None when no budget has a row in its current window."""
    now = timezone.now()
    starts = {period: window_start(period=period, now=now) for period in BudgetPeriod.values}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT MAX(u.used / b."limit" * 100) FROM agentops_budgetusage u
              JOIN agentops_budget b ON b.id = u.budget_id
              LEFT JOIN agentops_agent a ON a.id = b.agent_id
             WHERE b.enabled AND b."limit" > 0 AND (%s = '' OR a.slug = %s)
               AND ((b.period = 'minute' AND u.window_start = %s)
                 OR (b.period = 'day' AND u.window_start = %s)
                 OR (b.period = 'month' AND u.window_start = %s))
            """,
            [agent, agent, starts["minute"], starts["day"], starts["month"]],
        )
        (value,) = cursor.fetchone()
    return float(value) if value is not None else None
