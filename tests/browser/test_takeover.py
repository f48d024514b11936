"""The takeover queue in real browsers: a handoff arrives live, is claimed, answered and
handed back while the end user watches; two operators race for one claim."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from agentops.models import Handoff, HandoffStatus, Run, RunStatus
from tests.agentops.operators.helpers import make_handoff
from tests.browser.conftest import login, screenshot
from tests.browser.test_console import send, start_session
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_hands_off_to_an_operator_who_replies_live_and_hands_back(
    browser, base_url, chat_agent, bob
):
    UserFactory(username="erin", role="operator")
    user = login(browser, base_url, "erin")
    operator = login(browser, base_url, "bob", "/operators/")
    expect(operator.locator("text=Nobody is waiting")).to_be_visible()
    expect(operator.locator("[data-live-status]")).to_contain_text("live")

    start_session(user, chat_agent, "erin")
    send(user, "I want a human please")
    expect(user.locator("[data-handoff-notice]")).to_contain_text("A human will join")
    expect(user.locator("[data-run-badge]")).to_have_text("Handed off")

    card = operator.locator("li.handoff")  # arrives live over /ws/ops/, no reload
    expect(card).to_have_count(1)
    expect(card).to_contain_text("The user asked: I want a human please")
    expect(card).to_contain_text("Support bot")
    draft = card.locator("textarea[name=draft]")
    expect(draft).not_to_have_value("")  # the suggested reply, editable
    screenshot(operator, "queue")
    draft.fill("Hi, this is Bob from support.")
    card.locator("button[data-claim]").click()
    operator.wait_for_url(re.compile(r".*/operators/handoffs/\d+/.*"))
    assert operator.url.endswith("/") and "Bob" not in operator.url  # no draft in the URL
    reply = operator.locator("#reply-content")
    expect(reply).to_have_value("Hi, this is Bob from support.")
    expect(operator.locator("[data-convo]")).to_have_attribute("data-connected", "1")
    expect(user.locator("[data-handoff-notice]")).to_contain_text(
        "bob (a human operator) has joined"
    )

    operator.locator("#reply button[type=submit]").click()
    seen = user.locator("li.msg-operator .msg-body", has_text="Hi, this is Bob from support.")
    expect(seen).to_be_visible()  # live in the end user's console
    expect(user.locator("li.msg-operator .msg-role")).to_have_text("Operator · bob")
    expect(operator.locator("#reply-content")).to_have_value("")

    send(user, "thanks, that helps")
    expect(user.locator("#composer .notice")).to_contain_text("passed on")
    expect(operator.locator("li.msg-user .msg-body", has_text="thanks, that helps")).to_be_visible()
    screenshot(operator, "takeover")

    operator.locator("button[data-hand-back]").click()
    operator.wait_for_url(f"{base_url}/operators/")
    expect(operator.locator(".flash")).to_contain_text("Handed back")
    expect(
        user.locator("li.msg-assistant .msg-body", has_text="You said: thanks, that helps")
    ).to_be_visible()
    expect(user.locator("[data-handoff-notice]")).to_be_hidden()
    handoff = Handoff.objects.get()
    assert handoff.status == HandoffStatus.RESOLVED and handoff.resolution == "handed_back"
    assert Run.objects.filter(session=handoff.session, status=RunStatus.SUCCEEDED).count() == 1


def test_it_lets_exactly_one_of_two_racing_operators_claim(browser, base_url, bob):
    UserFactory(username="dave", role="operator")
    handoff = make_handoff(reason="Race me")
    first = login(browser, base_url, "bob", "/operators/")
    second = login(browser, base_url, "dave", "/operators/")
    buttons = [p.locator(f'button[data-claim="{handoff.pk}"]') for p in (first, second)]
    for button in buttons:
        expect(button).to_be_enabled()
    # Fire both clicks from the pages themselves, so the two POSTs leave at once.
    for page in (first, second):
        page.evaluate(
            'id => { window.__claim = document.querySelector(`button[data-claim="${id}"]`); }',
            handoff.pk,
        )
    first.evaluate("() => window.__claim.click()")
    second.evaluate("() => window.__claim.click()")
    winner_name = None
    for _ in range(100):
        handoff.refresh_from_db()
        if handoff.status == HandoffStatus.CLAIMED:
            winner_name = handoff.claimed_by.username
            break
        first.wait_for_timeout(50)
    assert winner_name in ("bob", "dave")
    winner, loser = (first, second) if winner_name == "bob" else (second, first)
    winner.wait_for_url(re.compile(rf".*/operators/handoffs/{handoff.pk}/.*"))
    expect(loser.locator("[role=alert]")).to_have_text(
        f"Not claimed: {winner_name} claimed it first."
    )
    assert "/operators/handoffs/" not in loser.url
