"""Transfers in a real browser: an admin lets an agent transfer to another in the builder (a
wrong entry refused beside its field), then a conversation in the console passes from one
agent to the other, each answer labelled with the agent that wrote it."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from agentops.agents.services import agent_version_create
from agentops.models import AgentVersion, Session
from tests.browser.conftest import login, screenshot
from tests.browser.test_console import send, start_session
from tests.factories import AgentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_sets_a_transfer_in_the_builder_and_the_console_shows_both_agents(
    browser, base_url, chat_agent, alice, console_errors_expected
):
    console_errors_expected(r"status of 400 \(Bad Request\)")  # the refused save below
    billing = AgentFactory(slug="billing", name="Billing", endpoint=chat_agent.endpoint)
    agent_version_create(agent=billing, author=None, publish=True)
    page = login(browser, base_url, "alice", f"/agents/{chat_agent.slug}/")
    page.fill("#id_transfers", '[{"agent": "nobody", "description": "x"}]')
    page.click("button[name=publish]")
    expect(page.locator('[data-error-for="transfers"]')).to_contain_text("#1 (nobody) agent")
    assert not AgentVersion.objects.filter(agent=chat_agent).exists()
    transfer = {"agent": "billing", "description": "Billing: refunds and invoices"}
    page.fill("#id_transfers", json.dumps([transfer]))
    page.click("button[name=publish]")
    expect(page.locator(".flash")).to_contain_text("published")

    page.goto(f"{base_url}/console/")
    start_session(page, chat_agent, "erin")
    send(page, "I want a refund")
    answer = page.locator("li.msg-assistant", has_text="You said: I want a refund")
    expect(answer.locator(".msg-role")).to_have_text("Billing")
    page.reload()  # the labels come from the stored messages too
    expect(page.locator("li.msg-assistant .msg-role").first).to_have_text(chat_agent.name)
    expect(page.locator("li.msg-assistant .msg-role").last).to_have_text("Billing")
    assert Session.objects.get().agent == billing
    screenshot(page, "console-transfer")
