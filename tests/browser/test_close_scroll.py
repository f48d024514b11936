"""Closing a conversation leaves its last message in view, in the Console and in the widget:
the notice and the rating that appear on closing must not push it off-screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agentops.models import Handoff
from tests.browser.conftest import login
from tests.browser.test_console import send as console_send
from tests.browser.test_console import start_session
from tests.browser.test_widget import host, open_widget
from tests.browser.test_widget import send as widget_send

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
__all__ = ["host"]  # the widget's host page fixture

REPLIES = 14


def reply_then_close(bob) -> str:  # type: ignore[no-untyped-def]
    from agentops.operators.assignment.services import handoff_claim
    from agentops.operators.work.services import handoff_reply

    handoff = handoff_claim(handoff_id=Handoff.objects.get().pk, user=bob)
    for n in range(REPLIES - 1):
        handoff_reply(handoff=handoff, user=bob, content=f"Operator line {n} of a long answer.")
    last = "That is all from me: goodbye!"
    handoff_reply(handoff=handoff, user=bob, content=last)
    return last


def test_the_console_keeps_the_last_message_in_view_on_close(browser, base_url, chat_agent, bob):
    from agentops.operators.work.services import handoff_close

    page = login(browser, base_url, "bob", viewport={"width": 1000, "height": 700})
    start_session(page, chat_agent, "erin")
    console_send(page, "I want a human please")
    expect(page.locator("[data-handoff-notice]")).to_be_visible()
    last = reply_then_close(bob)
    last_message = page.locator("li.msg-operator .msg-body", has_text=last)
    expect(last_message).to_be_visible()
    handoff_close(handoff=Handoff.objects.get(), user=bob)
    expect(page.locator("[data-rating]")).to_be_visible()
    expect(page.locator("[data-closed-notice]")).to_be_visible()
    expect(last_message).to_be_in_viewport()


def test_the_widget_keeps_the_last_message_in_view_on_close(browser, host, bob):
    from agentops.operators.work.services import handoff_close

    host_url, _ = host
    _page, chat = open_widget(browser, host_url)
    widget_send(chat, "I want a human please")
    expect(chat.locator("#aow-notice")).to_have_text("A person will join the conversation shortly.")
    last = reply_then_close(bob)
    last_message = chat.locator(".aow-msg", has_text=last)
    expect(last_message).to_be_visible()
    handoff_close(handoff=Handoff.objects.get(), user=bob)
    expect(chat.locator("#aow-rate")).to_be_visible()
    expect(last_message).to_be_in_viewport()
