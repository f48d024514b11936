"""People and teams in a real browser: an invited operator joins and lands on the queue; a
role is one choice; a demoted operator's open queue page loses its live stream at once."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agentops.auth import user_role
from agentops.models import Team
from agentops.people.services import user_role_set
from tests.browser.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ERINS_PASSWORD = "erin's own long phrase 9"


def test_it_invites_an_operator_who_lands_on_the_queue(
    browser, base_url, alice, charlie, console_errors_expected
):
    console_errors_expected(r"status of 410 \(Gone\) \(http://[^/]+/invite/\)$")  # used twice below
    Team.objects.create(slug="billing", name="Billing desk")
    admin = login(browser, base_url, "alice", "/users/")

    # One role per person: a single-choice select per row, radio buttons for an invitation.
    selects = admin.locator("select[name=role]")
    expect(selects).not_to_have_count(0)
    assert all(not s.evaluate("e => e.multiple") for s in selects.all())
    expect(admin.locator("#invite-form input[type=radio][name=role]")).to_have_count(3)
    expect(admin.locator("[name=groups]")).to_have_count(0)
    admin.select_option(f"#role-{charlie.pk}", "operator")
    admin.locator("tr[data-user=charlie] button", has_text="Set role").click()
    expect(admin.locator(".flash")).to_contain_text("charlie: operator")
    assert user_role(type(charlie).objects.get(pk=charlie.pk)) == "operator"

    admin.check("#invite-form input[name=role][value=operator]")
    admin.locator("#invite-form label", has_text="Billing desk").click()
    admin.fill("#invite-form input[name=note]", "Erin from support")
    admin.locator("#invite-form button[type=submit]").click()
    link = admin.locator("[data-invite-link]").input_value()
    assert link.startswith(f"{base_url}/invite/#")  # the token stays out of request lines
    expect(admin.locator("#invitations")).to_contain_text("Erin from support")
    screenshot(admin, "people-invite")

    newcomer = browser.new_context().new_page()
    newcomer.goto(link)
    expect(newcomer.locator("[data-no-token]")).to_be_hidden()
    newcomer.fill("input[name=username]", "erin")
    newcomer.fill("input[name=password1]", ERINS_PASSWORD)
    newcomer.fill("input[name=password2]", ERINS_PASSWORD)
    newcomer.locator("button[type=submit]").click()
    newcomer.wait_for_url(f"{base_url}/login/")
    expect(newcomer.locator(".flash")).to_contain_text(
        "Welcome, erin: you joined as operator in Billing desk."
    )
    newcomer.fill("input[name=username]", "erin")
    newcomer.fill("input[name=password]", ERINS_PASSWORD)
    newcomer.click("button[type=submit]")
    newcomer.wait_for_url(f"{base_url}/operators/")
    expect(newcomer.locator("h1")).to_have_text("Takeover queue")
    screenshot(newcomer, "invited-operator-queue")

    newcomer.goto(link)  # the link worked once
    newcomer.fill("input[name=username]", "erin2")
    newcomer.fill("input[name=password1]", ERINS_PASSWORD)
    newcomer.fill("input[name=password2]", ERINS_PASSWORD)
    newcomer.get_by_role("button", name="Create my account").click()
    expect(newcomer.locator("[data-unusable]")).to_contain_text("used already")

    admin.goto(f"{base_url}/teams/")
    expect(admin.locator("tr[data-team=billing] [data-member=erin]")).to_be_visible()
    screenshot(admin, "teams")


def test_it_cuts_a_demoted_operators_live_queue_at_once(browser, base_url, alice, bob):
    operator = login(browser, base_url, "bob", "/operators/")
    status = operator.locator("[data-live-status]")
    expect(status).to_contain_text("live")
    user_role_set(user=bob, role="viewer", actor=alice)
    expect(status).to_have_text("not allowed to follow this")
    operator.reload()
    expect(operator.locator("[data-live-status]")).to_contain_text("live")  # as a viewer now
    expect(operator.locator("button[data-claim]")).to_have_count(0)
