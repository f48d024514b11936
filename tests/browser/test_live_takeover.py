"""The live view in real browsers: a conversation in progress appears live, an operator takes
it over mid-run, the end user sees them join, and hand-back resumes the agent."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from agentops.models import Handoff, HandoffStatus
from tests.agentops.runtime.helpers import side_effects_forget, wait_for_package
from tests.browser.conftest import login, screenshot
from tests.browser.test_console import send, start_session
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_takes_over_a_running_conversation_from_the_live_view(
    browser, base_url, chat_agent, bob
):
    side_effects_forget()
    UserFactory(username="erin", role="operator")
    user = login(browser, base_url, "erin")
    operator = login(browser, base_url, "bob", "/operators/live/")
    expect(operator.locator("text=No conversation is in progress")).to_be_visible()
    expect(operator.locator("[data-live-status]")).to_contain_text("live")

    start_session(user, chat_agent, "erin")
    send(user, "chain 3 side_effect 1.5")
    expect(user.locator("[data-run-badge]")).to_have_text("Running")

    row = operator.locator("tr[data-live-session]")  # arrives live, no reload
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Support bot")
    expect(row.locator("[data-live-state]")).to_have_text("running")
    screenshot(operator, "live-view")
    row.locator("button[data-take-over]").click()

    # The run stops at its next checkpoint; the watch page then opens the claimed view.
    operator.wait_for_url(re.compile(r".*/operators/handoffs/\d+/$"), timeout=30000)
    expect(user.locator("[data-handoff-notice]")).to_contain_text(
        "bob (a human operator) has joined"
    )
    expect(user.locator("[data-run-badge]")).to_have_text("Handed off")
    handoff = Handoff.objects.get()
    assert handoff.reason == "taken over by bob" and handoff.claimed_by.username == "bob"
    assert handoff.status == HandoffStatus.CLAIMED

    operator.locator("#reply-content").fill("Hi, Bob here, I took over.")
    operator.locator("#reply button[type=submit]").click()
    expect(
        user.locator("li.msg-operator .msg-body", has_text="Hi, Bob here, I took over.")
    ).to_be_visible()
    screenshot(operator, "taken-over")

    wait_for_package(handoff.pk)
    operator.reload()
    operator.locator("button[data-hand-back]").click()
    operator.wait_for_url(f"{base_url}/operators/")
    expect(user.locator("li.msg-assistant .msg-body", has_text="Chain of 3 done.")).to_be_visible(
        timeout=30000
    )
    expect(user.locator("[data-handoff-notice]")).to_be_hidden()


def test_it_asks_the_end_user_for_a_rating_when_the_operator_closes(
    browser, base_url, chat_agent, bob
):
    from agentops.models import HandoffRating
    from agentops.operators.assignment.services import handoff_claim
    from agentops.operators.work.services import handoff_close

    UserFactory(username="erin", role="operator")
    user = login(browser, base_url, "erin")
    start_session(user, chat_agent, "erin")
    send(user, "I want a human please")
    expect(user.locator("[data-run-badge]")).to_have_text("Handed off")
    expect(user.locator("[data-rating]")).to_be_hidden()
    handoff = Handoff.objects.get()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    handoff_close(handoff=Handoff.objects.get(pk=handoff.pk), user=bob)

    rating = user.locator("[data-rating]")
    expect(rating).to_be_visible()  # shown live when the operator closes
    rating.locator("input[name=score][value='4']").check()
    rating.locator("textarea[name=comment]").fill("Solved quickly")
    rating.locator("button[data-rate]").click()
    expect(user.locator("[data-rating]")).to_contain_text("Thank you for your rating")
    expect(user.locator("[data-rating-given]")).to_contain_text("4 / 5")
    screenshot(user, "csat")
    saved = HandoffRating.objects.get()
    assert (saved.score, saved.comment, saved.handoff_id) == (4, "Solved quickly", handoff.pk)


def test_the_watch_page_catches_up_with_a_takeover_done_while_it_loaded(browser, base_url, bob):
    """The claim's live event went out before the page's socket joined: the page learns it
    on joining and opens the claimed conversation, instead of waiting for an event gone by."""
    from agentops.operators.assignment.services import handoff_claim
    from tests.agentops.operators.helpers import make_handoff

    handoff = make_handoff(reason="taken over by bob")
    handoff_claim(handoff_id=handoff.pk, user=bob)
    operator = login(browser, base_url, "bob", f"/operators/live/{handoff.session_id}/")
    operator.wait_for_url(re.compile(rf".*/operators/handoffs/{handoff.pk}/$"), timeout=15000)
