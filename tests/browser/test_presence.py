"""Presence follows the operator in a real browser: online from the login, a banner on every
page while not online (live, and with a button to go online), away once no page is open
(the scheduler's sweep), online again as soon as a page opens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from agentops.models import OperatorState
from agentops.operators.presence.services import operators_away_sweep
from tests.browser.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def presence(user) -> str:  # type: ignore[no-untyped-def]
    return OperatorState.objects.get(user=user).presence


def test_an_operator_is_online_from_login_and_told_whenever_not(browser, base_url, bob):
    page = login(browser, base_url, "bob", "/operators/")
    switch, banner = page.locator(".presence-switch"), page.locator("[data-presence-banner]")
    expect(switch).to_have_attribute("data-presence", "online")
    expect(banner).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-inbox", "live")
    assert presence(bob) == "online"

    switch.locator("select").select_option("offline")
    expect(banner).to_be_visible()  # live, from /ws/inbox/
    expect(banner).to_contain_text("You are offline: no conversations are assigned to you.")
    page.goto(f"{base_url}/memory/")
    expect(banner).to_contain_text("You are offline")  # every page, as rendered
    screenshot(page, "presence-offline-banner")
    banner.locator("[data-go-online]").click()
    expect(banner).to_be_hidden()
    expect(page.locator(".presence-switch")).to_have_attribute("data-presence", "online")
    assert presence(bob) == "online"

    # The laptop closes: no operator page is open, and the scheduler's sweep, minutes later,
    # makes bob away (no new conversations).
    context = page.context
    page.close()
    later = timezone.now() + timedelta(seconds=settings.OPERATOR_AWAY_AFTER_SECONDS + 1)
    assert operators_away_sweep(now=later) == 1
    assert presence(bob) == "away"

    # He opens a page again: online at once, and the page says so.
    page = context.new_page()
    page.goto(f"{base_url}/operators/")
    expect(page.locator(".presence-switch")).to_have_attribute("data-presence", "online")
    expect(page.locator("[data-presence-banner]")).to_be_hidden()
    assert presence(bob) == "online"
