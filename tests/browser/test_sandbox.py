"""A draft chat is a sandbox session (models.SessionQuerySet): the admin chats with the draft
in the builder while an operator watches Live conversations and the Console; neither ever
shows it, and it offers no Take over."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agentops.agents.services import agent_version_create
from agentops.models import Session
from tests.browser.conftest import login
from tests.browser.test_console import send, start_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_draft_chat_appears_neither_on_console_nor_in_live_conversations(
    browser, base_url, chat_agent, alice, bob
):
    agent_version_create(agent=chat_agent, author=alice, publish=True)
    live = login(browser, base_url, "bob", "/operators/live/")
    expect(live.locator("[data-live-status]")).to_contain_text("live")
    expect(live.locator("text=No conversation is in progress")).to_be_visible()

    builder = login(browser, base_url, "alice", f"/agents/{chat_agent.slug}/")
    builder.click("[data-draft-start]")
    expect(builder.locator("[data-convo]")).to_have_attribute("data-connected", "1")
    for question in ("where is my order?", "Where is my order"):  # "asked twice" bait
        send(builder, question)
        expect(builder.locator("li.msg-assistant .msg-body").last).to_contain_text(question)
    draft = Session.objects.get(title__startswith="Draft chat")

    # A real conversation next: its row arrives live, after every event of the draft chat.
    user = login(browser, base_url, "bob")
    start_session(user, chat_agent, "erin")
    send(user, "hello")
    expect(user.locator("li.msg-assistant .msg-body").last).to_contain_text("hello")
    real = Session.objects.get(external_user="erin")
    rows = live.locator("tr[data-live-session]")
    expect(rows).to_have_count(1)
    expect(rows).to_have_attribute("data-live-session", str(real.pk))
    expect(live.locator(f'[data-take-over="{draft.pk}"]')).to_have_count(0)
    live.reload()
    expect(live.locator("tr[data-live-session]")).to_have_count(1)
    expect(live.locator("[data-signal]")).to_have_count(0)  # no false "user asked twice"

    user.goto(f"{base_url}/console/")
    sessions = user.locator("#session-list li")
    expect(sessions).to_have_count(1)
    expect(sessions).to_contain_text("erin")
    expect(user.locator("#session-list")).not_to_contain_text("Draft chat")
    assert user.request.get(f"{base_url}/operators/live/{draft.pk}/").status == 404
