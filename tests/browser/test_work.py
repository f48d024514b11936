"""Working a conversation in real browsers: a canned reply inserted with the `/` shortcut
(keyboard only, placeholder filled), and a private note that operators see in the thread but
the end user never does (console view, after a reload, and the API's conversation JSON)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from agentops.models import Handoff, Session
from agentops.operators.assignment.services import handoff_claim
from agentops.operators.canned.services import canned_reply_save
from tests.agentops.operators.helpers import make_handoff
from tests.browser.conftest import login, screenshot
from tests.browser.test_console import send, start_session
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_inserts_a_canned_reply_by_slash_shortcut_with_placeholders_filled(
    browser, base_url, bob
):
    bob.first_name = "Bob"
    bob.save()
    handoff = make_handoff()
    Session.objects.filter(pk=handoff.session_id).update(external_user="user:Ada")
    handoff_claim(handoff_id=handoff.pk, user=bob)
    canned_reply_save(
        reply=None,
        shortcut="refund-policy",
        title="Refund policy",
        content="Hi {{ user.name }}, {{ operator.name }} here: refunds take 5 days.",
        scope="personal",
        actor=bob,
    )
    canned_reply_save(
        reply=None,
        shortcut="goodbye",
        title="Goodbye",
        content="Bye {{ user.name | there }}!",
        scope="personal",
        actor=bob,
    )
    page = login(browser, base_url, "bob", f"/operators/handoffs/{handoff.pk}/")
    box = page.locator("#reply-content")
    box.fill("")
    box.press_sequentially("Hello. /ref pol")  # `/` and words: the list filters live
    options = page.locator("#canned-list [role=option]")
    expect(options).to_have_count(1)
    expect(options.first).to_contain_text("/refund-policy")
    expect(box).to_have_attribute("aria-expanded", "true")
    expect(box).to_have_attribute("aria-activedescendant", "canned-opt-0")
    box.press("Enter")
    expect(box).to_have_value("Hello. Hi Ada, Bob here: refunds take 5 days.")
    expect(page.locator("#canned-list")).to_be_hidden()
    expect(box).to_have_attribute("aria-expanded", "false")

    box.press_sequentially(" /")  # every reply; ↓ chooses the second, Escape closes
    expect(options).to_have_count(2)
    box.press("ArrowDown")
    expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    box.press("Escape")
    expect(page.locator("#canned-list")).to_be_hidden()
    box.press("Backspace")  # the stray "/" typed above
    screenshot(page, "canned-reply")
    page.locator("#reply button[type=submit]").click()
    stored = page.locator("li.msg-operator .msg-body", has_text="refunds take 5 days")
    expect(stored).to_have_text("Hello. Hi Ada, Bob here: refunds take 5 days.")


def test_it_never_shows_a_private_note_to_the_end_user(browser, base_url, chat_agent, alice, bob):
    UserFactory(username="erin", role="operator")
    user = login(browser, base_url, "erin")
    start_session(user, chat_agent, "erin")
    send(user, "I want a human please")
    expect(user.locator("[data-run-badge]")).to_have_text("Handed off")
    handoff = Handoff.objects.get()

    operator = login(browser, base_url, "bob", f"/operators/handoffs/{handoff.pk}/")
    operator.locator("text=Claim this conversation").click()
    expect(operator.locator("#reply-content")).to_be_visible()
    expect(operator.locator("[data-convo]")).to_have_attribute("data-connected", "1")
    # An admin has the conversation open too: another operator's note reaches her live.
    colleague = login(browser, base_url, "alice", f"/operators/handoffs/{handoff.pk}/")
    expect(colleague.locator("body")).to_have_attribute("data-inbox", "live")
    operator.fill("#note-content", "Private: account flagged for chargebacks")
    operator.locator("button[data-add-note]").click()
    note = operator.locator("li.msg-note", has_text="account flagged for chargebacks")
    expect(note).to_be_visible()  # in the operator's thread, at once
    expect(note).to_contain_text("operators only")
    expect(operator.locator("#note-content")).to_have_value("")
    seen = colleague.locator("li.msg-note", has_text="account flagged for chargebacks")
    expect(seen).to_have_count(1)  # without a reload
    expect(seen).to_contain_text("Private note · bob")
    operator.fill("#reply-content", "Hello Erin, looking into it.")
    operator.locator("#reply button[type=submit]").click()
    expect(user.locator("li.msg-operator .msg-body")).to_have_text("Hello Erin, looking into it.")
    # The note stays in the thread after a live message arrived, above it.
    thread = operator.locator("[data-messages] > li:not([hidden])")
    expect(thread.filter(has_text="Hello Erin")).to_have_count(1)  # the reply reached it too
    expect(operator.locator("li.msg-note")).to_have_count(1)
    texts = thread.all_inner_texts()
    where = {
        word: next(i for i, t in enumerate(texts) if word in t) for word in ("flagged", "Erin")
    }
    assert where["flagged"] < where["Erin"]
    screenshot(operator, "private-note")

    assert "chargebacks" not in user.content()  # the end user's live view
    assert user.locator("li.msg-note").count() == 0
    user.reload()
    expect(user.locator("li.msg-operator .msg-body")).to_have_text("Hello Erin, looking into it.")
    assert "chargebacks" not in user.content()
    api = user.request.get(f"{base_url}/api/sessions/{handoff.session_id}/messages")
    assert api.ok and "Hello Erin" in api.text()
    assert "chargebacks" not in api.text()
    assert re.search(r"/console/sessions/", user.url)
