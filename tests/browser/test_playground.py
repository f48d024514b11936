"""The playground and the model endpoint page in a real browser: a model call opened from a
run's trace, edited and run again beside the original; an endpoint's connection tested and
its breaker reset."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agentops.models import BreakerState, Message, PlaygroundRun
from agentops.runtime.services import session_create, session_post_message
from tests.agentops.runtime.helpers import wait_for_run
from tests.browser.conftest import login, screenshot
from tests.factories import EndpointFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_reruns_a_model_call_from_a_trace_side_by_side(
    browser, base_url, chat_agent, devmodel, alice
):
    session = session_create(agent=chat_agent, external_user="erin")
    run = wait_for_run(session_post_message(session=session, content="hello there").pk)
    assert run.status == "succeeded", run.error_message
    page = login(browser, base_url, "alice", f"/runs/{run.pk}/")

    row = page.locator("tr[data-name='model.call']").first
    row.locator("summary").click()
    row.locator("[data-open-playground]").click()
    page.wait_for_url("**/playground/calls/**")
    expect(page.locator("#id_instructions")).to_have_value(chat_agent.system_prompt)
    expect(page.locator("#id_m-0-content")).to_have_value("hello there")
    expect(page.locator("#id_model")).to_have_value(chat_agent.model_name)

    page.fill("#id_m-0-content", "goodbye there")
    page.fill("#id_temperature", "0.5")
    page.click("#playground-run")
    page.wait_for_url("**/playground/runs/**")

    original, rerun = page.locator("[data-side=original]"), page.locator("[data-side=rerun]")
    expect(original.locator("[data-field=output]")).to_have_text("You said: hello there")
    expect(rerun.locator("[data-field=output]")).to_have_text("You said: goodbye there")
    expect(rerun.locator("[data-field=tokens]")).not_to_have_text("0 / 0")
    expect(rerun.locator("[data-field=latency]")).to_contain_text("ms")
    expect(page.locator("#output-diff del")).to_have_text("hello")
    expect(page.locator("#output-diff ins")).to_have_text("goodbye")
    # The edited request stays in the form, ready for another try.
    expect(page.locator("#id_m-0-content")).to_have_value("goodbye there")
    screenshot(page, "playground-side-by-side")
    assert PlaygroundRun.objects.get().temperature == 0.5
    assert not Message.objects.filter(session=session, content__contains="goodbye").exists()


def test_it_tests_an_endpoint_and_resets_its_breaker(
    browser, base_url, devmodel, model_name, alice
):
    """Testing a connection is an admin's (docs/architecture.md, "Egress")."""
    endpoint = EndpointFactory(name="dev", base_url=devmodel.url, default_model=model_name)
    broken = EndpointFactory(
        name="broken", base_url="http://127.0.0.1:9/v1", breaker_state=BreakerState.OPEN
    )
    page = login(browser, base_url, "alice", "/endpoints/")
    page.click("a:has-text('dev')")
    page.click("#endpoint-test button[type=submit]")
    expect(page.locator("[data-check=ok]")).to_be_visible()
    expect(page.locator("[data-check-model]")).to_have_text(model_name)

    page.goto(f"{base_url}/endpoints/{broken.pk}/")
    page.click("#endpoint-test button[type=submit]")
    expect(page.locator("[data-check=failed] [data-check-class]")).to_have_text("connection")
    screenshot(page, "endpoint-test-failed")
    page.on("dialog", lambda d: d.accept())
    page.click("#breaker button:has-text('Reset breaker')")
    expect(page.locator("[data-breaker-state]")).to_have_text("Closed")
    expect(page.locator("#breaker-history")).to_contain_text("reset by alice (was open")
    broken.refresh_from_db()
    assert broken.breaker_state == BreakerState.CLOSED
    assert endpoint.breaker_transitions.count() == 0
