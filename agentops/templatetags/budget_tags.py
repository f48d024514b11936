"""Spend against budget, by window (a day for a per-day budget), on the agent page and in
insights: an inclusion tag, so the pages' views need not know budgets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template

from agentops.budgets.models import Budget
from agentops.budgets.selectors import budget_spend, budgets_list
from tracing.templatetags.tracing_tags import DASH

register = template.Library()


@register.inclusion_tag("budgets/_spend.html")
def budget_spend_table(agent: Any = None) -> dict[str, Any]:
    """The budgets that count `agent`'s runs (an Agent, a slug, or none: every budget), each
    with its current window and its last 14 windows."""
    agent_id: int | None = None
    if isinstance(agent, str) and agent:
        from agentops.models import Agent

        agent_id = Agent.objects.filter(slug=agent).values_list("pk", flat=True).first()
        if agent_id is None:
            return {"spends": []}
    elif agent is not None and not isinstance(agent, str):
        agent_id = agent.pk
    budgets: list[Budget] = list(budgets_list(agent_id=agent_id))
    return {"spends": budget_spend(budgets=budgets)}


@register.filter
def budget_amount(value: Decimal | float | None, metric: str) -> str:
    """A budget's figure in its unit: dollars, tokens or runs."""
    if value is None:
        return DASH
    amount = Decimal(value)
    if metric == "cost":
        return f"${amount:,.4f}" if amount < 1 else f"${amount:,.2f}"
    return f"{amount:,.0f}"


@register.simple_tag
def budget_rows() -> list[Budget]:
    return list(budgets_list())
