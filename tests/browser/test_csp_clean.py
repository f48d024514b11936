"""htmx swaps leave the CSP unbroken: a reply box the person resized (the browser writes its
height into a style attribute) is swapped after sending without an inline-style refusal,
which the browser fixture would report as a console error."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login
from tests.browser.test_console import send, start_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_resized_reply_box_is_swapped_without_a_csp_refusal(browser, base_url, chat_agent, bob):
    page = login(browser, base_url, "bob")
    start_session(page, chat_agent, "erin")
    # What dragging the box's resize handle does: the browser sets its inline height.
    page.locator("#composer textarea").evaluate("box => { box.style.height = '9rem'; }")
    send(page, "hello after resizing")
    expect(
        page.locator("li.msg-assistant .msg-body", has_text="You said: hello after resizing")
    ).to_be_visible()
    expect(page.locator("[data-run-badge]")).to_have_text("Succeeded")
