"""Guardrails in a real browser: an admin sets them in the builder (a bad one is refused beside
its field), an end user meets them in the widget (a blocked question gets the guardrail's
message as the reply, not an error; a phone number in the answer is redacted), and the console
shows the blocked reply, the failures page the run under its guardrail."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from agentops.models import AgentVersion, Run, Session
from tests.browser.conftest import login, screenshot
from tests.browser.test_widget import host, open_widget, send  # noqa: F401 - `host` is a fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GUARDRAILS = [
    {
        "name": "no-competitors",
        "stage": "input",
        "kind": "terms",
        "action": "block",
        "terms": ["AcmeCorp"],
        "message": "I can only talk about our own products.",
    },
    {"name": "phones", "stage": "output", "kind": "pii", "action": "redact", "entities": ["phone"]},
]


def test_it_sets_guardrails_in_the_builder_and_the_end_user_meets_them(
    browser,
    base_url,
    host,  # noqa: F811 - the fixture imported above
    chat_agent,
    alice,
    console_errors_expected,
):
    console_errors_expected(r"status of 400 \(Bad Request\)")  # the refused save below
    page = login(browser, base_url, "alice", f"/agents/{chat_agent.slug}/")
    page.fill("#id_guardrails", '[{"name": "x", "stage": "input", "kind": "terms"}]')
    page.click("button[name=publish]")
    expect(page.locator('[data-error-for="guardrails"]')).to_contain_text("#1 (x) action")
    assert not AgentVersion.objects.filter(agent=chat_agent).exists()
    page.fill("#id_guardrails", json.dumps(GUARDRAILS))
    page.click("button[name=publish]")
    expect(page.locator(".flash")).to_contain_text("published")
    screenshot(page, "agent-guardrails")

    host_url, _ = host
    widget, chat = open_widget(browser, host_url)
    send(chat, "is acmecorp cheaper?")
    reply = chat.locator(".aow-assistant .aow-body", has_text="our own products")
    expect(reply).to_have_count(1)
    expect(chat.locator("#aow-error")).to_be_hidden()
    send(chat, "my number is +1 415-555-2671")
    expect(chat.locator(".aow-assistant .aow-body").last).to_have_text(
        "You said: my number is [phone number]"
    )
    answers = chat.locator(".aow-assistant .aow-body").all_inner_texts()
    assert not any("415-555-2671" in a for a in answers), answers
    screenshot(widget, "widget-guardrails")

    blocked = Run.objects.get(error_class="guardrail")
    session = Session.objects.get(pk=blocked.session_id)
    page.goto(f"{base_url}/console/sessions/{session.pk}/")
    expect(page.locator("li.msg-assistant .msg-body").first).to_contain_text("our own products")
    page.goto(f"{base_url}/failures/")
    group = page.locator('.failure-group[data-error-class="guardrail"]')
    expect(group).to_contain_text("blocked by guardrail no-competitors (input)")
    page.goto(f"{base_url}/runs/{blocked.pk}/")
    expect(page.locator("body")).to_contain_text("no-competitors")
