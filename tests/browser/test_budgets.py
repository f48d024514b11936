"""The budgets page in a real browser: an admin adds a budget (a bad field named beside it),
a conversation spends against it, and the page and the agent page show the spend."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agentops.budgets.models import Budget
from agentops.runtime.services import session_create, session_post_message
from tests.agentops.runtime.helpers import wait_for_run
from tests.browser.conftest import login, screenshot
from tracing.models import ModelPrice

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_adds_a_budget_and_watches_it_spent(
    browser, base_url, dev_agent, alice, console_errors_expected
):
    console_errors_expected(r"status of 400 \(Bad Request\) \(http://[^/]+/budgets/\)$")  # below
    ModelPrice.objects.create(
        model=dev_agent.endpoint.default_model, input_per_million=1000, output_per_million=1000
    )
    page = login(browser, base_url, "alice", "/budgets/")
    page.fill("#id_name", "support per day")
    page.select_option("#id_scope", "agent")
    page.select_option("#id_agent", dev_agent.slug)
    page.select_option("#id_metric", "cost")
    page.select_option("#id_period", "minute")
    page.fill("#id_limit", "5")
    page.click("[data-budget-form] button")
    expect(page.locator('[data-error-for="period"]')).to_contain_text("per day or per month")
    assert not Budget.objects.exists()
    page.select_option("#id_period", "day")
    page.click("[data-budget-form] button")
    expect(page.locator(".flash")).to_contain_text("Budget support per day added.")
    expect(page.locator('[data-budget="support per day"]').first).to_contain_text("nothing yet")

    run = session_post_message(
        session=session_create(agent=dev_agent, external_user="erin"), content="hello"
    )
    wait_for_run(run.pk)
    page.reload()
    expect(page.locator('[data-budget="support per day"] [data-current]')).to_contain_text("$")
    page.goto(f"{base_url}/agents/{dev_agent.slug}/")
    expect(page.locator("#budget-spend [data-budget='support per day']")).to_be_visible()
    screenshot(page, "budget-spend")
