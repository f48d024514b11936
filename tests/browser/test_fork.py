"""Forking from a run's page in Chromium: an operator forks after a tool result with an edited
result; the fork's page links back, the origin's page lists the fork, nothing before the fork
point runs again and the non-idempotent call after it is answered from the recording."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from agentops.models import Run, RunStatus, ToolCall
from agentops.runtime.services import session_create, session_post_message
from agentops.testing.tools import side_effects_log
from tests.agentops.runtime.helpers import side_effects_forget, wait_for_run
from tests.browser.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT = (
    'call slow_lookup {"label": "stock", "seconds": 0}\n'
    'call side_effect {"label": "order", "seconds": 0}'
)


def executions() -> list[str]:
    log = side_effects_log()
    lines = log.read_text().splitlines() if log.exists() else []
    return [json.loads(line)["label"] for line in lines]


def test_it_forks_from_a_step_of_the_run_page(browser, base_url, chat_agent, bob, model_name):
    side_effects_forget()
    session = session_create(agent=chat_agent, external_user="erin")
    origin = wait_for_run(session_post_message(session=session, content=SCRIPT).pk)
    assert origin.status == RunStatus.SUCCEEDED, (origin.error_class, origin.error_message)
    assert executions() == ["stock", "order"]

    page = login(browser, base_url, "bob", path=f"/runs/{origin.pk}/")
    page.locator("a.fork-link[href='#fork-step-2']").click()  # from the trace's step 2
    fork_form = page.locator("#fork-step-2")
    expect(fork_form).to_have_attribute("open", "")
    result = fork_form.locator("textarea[name=content]")
    expect(result).to_have_value("found stock")  # the tool result, to edit
    result.fill("found nothing in stock")
    fork_form.locator("input[name=model]").fill(f"{model_name}-b")  # and another model
    screenshot(page, "fork-form")
    fork_form.locator("button[type=submit]").click()

    page.wait_for_url(re.compile(r".*/runs/(?!" + str(origin.pk) + r")[0-9a-f-]+/$"))
    fork = Run.objects.get(forked_from=origin)
    assert page.url.endswith(f"/runs/{fork.pk}/")
    expect(page.locator(".flash")).to_contain_text("Forked at step 2")
    origin_link = page.locator("[data-fork-origin]")
    expect(origin_link).to_contain_text("at step 2")
    expect(origin_link).to_contain_text("tool message edited")
    expect(origin_link).to_contain_text("runs v2")  # derived from v1, its agent as it was
    expect(page.locator("#run-status")).to_have_text("Succeeded")  # live, no reload
    expect(page.locator("ol.messages li").last).to_contain_text(
        "Tool results: found nothing in stock ; changed order"
    )
    assert executions() == ["stock", "order"]  # nothing ran again
    expect(page.locator(".run-head .facts")).to_contain_text(f"{model_name}-b")
    replayed = ToolCall.objects.get(run=fork, tool_name="side_effect")
    assert replayed.fork_outcome == "replayed"
    expect(page.locator("table:not(.waterfall) .fork-replayed")).to_have_text("replayed")
    expect(page.locator(".span-inline-event .fork-replayed")).to_have_text("replayed")  # trace
    screenshot(page, "fork-run")

    origin_link.locator("a").first.click()
    page.wait_for_url(f"**/runs/{origin.pk}/")
    expect(page.locator("[data-forks]")).to_contain_text("at step 2")
    page.locator("[data-forks] a").click()
    page.wait_for_url(f"**/runs/{fork.pk}/")
