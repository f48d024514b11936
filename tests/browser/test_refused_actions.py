"""A refused form action shows its reason in a real browser: the view answers an htmx request
with its partial and a 4xx status, which htmx 2 does not swap unless told (static/agentops/app.js
tells it, for every page)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agentops.operators.assignment.services import handoff_claim
from agentops.operators.models import PrivateNote
from tests.agentops.operators.helpers import make_handoff
from tests.browser.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_refused_note_shows_why_and_keeps_the_form(
    browser, base_url, bob, console_errors_expected
):
    # Chromium reports every 4xx answer in the console: here it is the point of the test.
    console_errors_expected(r"status of 422 .*/operators/handoffs/\d+/note\)$")
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    page = login(browser, base_url, "bob", f"/operators/handoffs/{handoff.pk}/")
    form = page.locator("#note-form")
    form.locator("textarea").fill("   ")  # passes `required`, refused by the server (422)
    with page.expect_response(lambda r: r.url.endswith("/note")) as answer:
        form.locator("[data-add-note]").click()
    assert answer.value.status == 422
    expect(page.locator("#note-form [role=alert]")).to_have_text("the note must not be empty")
    expect(page.locator("#note-form [data-add-note]")).to_be_enabled()
    assert not PrivateNote.objects.filter(handoff=handoff).exists()

    page.locator("#note-form textarea").fill("Called the warehouse")  # the form still works
    page.locator("#note-form [data-add-note]").click()
    expect(page.locator("#note-form [role=alert]")).to_have_count(0)
    expect(page.get_by_text("Called the warehouse")).to_be_visible()
