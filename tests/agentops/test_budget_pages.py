"""The budgets page (admins), and spend against budget on the agent page and in insights."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from agentops.agents.services import agent_version_create
from agentops.budgets.models import Budget, BudgetUsage
from agentops.budgets.services import budget_create, window_start
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


def _budget(agent, **values):  # type: ignore[no-untyped-def]
    fields = {
        "name": "support per day",
        "scope": "agent",
        "agent": agent,
        "metric": "cost",
        "period": "day",
        "limit": Decimal(10),
    }
    return budget_create(actor=None, **{**fields, **values})


def test_only_admins_see_the_budgets_page(client_as):
    assert client_as("operator").get("/budgets/").status_code == 403
    assert client_as("admin").get("/budgets/").status_code == 200


def test_an_admin_adds_a_budget_and_a_bad_field_is_named_beside_it(client_as):
    agent = AgentFactory(slug="support")
    admin = client_as("admin")
    body = {
        "name": "support tokens",
        "scope": "agent",
        "agent": "support",
        "metric": "tokens",
        "period": "minute",
        "limit": "1000",
        "on_limit": "refuse",
    }
    refused = admin.post("/budgets/", body)
    assert refused.status_code == 400
    assert b'data-error-for="period"' in refused.content
    assert not Budget.objects.exists()
    added = admin.post("/budgets/", {**body, "period": "day"})
    assert added.status_code == 302, added.content
    budget = Budget.objects.get()
    assert (budget.agent, budget.limit, budget.period) == (agent, Decimal(1000), "day")
    admin.post(f"/budgets/{budget.pk}/enable", {"enabled": "0"})
    budget.refresh_from_db()
    assert not budget.enabled
    admin.post(f"/budgets/{budget.pk}/delete")
    assert not Budget.objects.exists()


def test_the_agent_page_and_insights_show_spend_by_day(client_as, alice):
    agent = AgentFactory(slug="support")
    agent_version_create(agent=agent, author=alice, publish=True)
    budget = _budget(agent)
    today = window_start(period="day", now=datetime.now(UTC))
    BudgetUsage.objects.create(budget=budget, subject=str(agent.pk), window_start=today, used=9)
    BudgetUsage.objects.create(
        budget=budget,
        subject=str(agent.pk),
        window_start=datetime(2026, 1, 5, tzinfo=UTC),
        used=Decimal("2.5"),
    )
    admin = client_as("admin")
    page = admin.get("/agents/support/").content.decode()
    assert 'id="budget-spend"' in page and 'data-budget="support per day"' in page
    assert "$9.00 (90%)" in page and 'data-window="2026-01-05"' in page
    insights = admin.get("/insights/?agent=support").content.decode()
    assert 'data-budget="support per day"' in insights and "Jan 5: $2.50" in insights
    AgentFactory(slug="other")
    assert "No budget counts these runs." in admin.get("/insights/?agent=other").content.decode()
