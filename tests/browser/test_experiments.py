"""The comparison page in a real browser: an experiment made in the form, run, followed live
until it finishes, then read per variant and per item."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agentops.agents.services import agent_version_create, agent_version_derive
from agentops.experiments.models import Dataset, DatasetItem, Experiment
from tests.agentops.observe.test_browser import watch_console
from tests.browser.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_compares_two_versions_live_and_shows_the_regressions(
    browser, base_url, bob, alice, dev_agent, devmodel, model_name
):
    devmodel.script(model_name, latency=0.5)  # slow enough to watch the progress move
    baseline = agent_version_create(agent=dev_agent, author=alice, publish=True)
    shouting = agent_version_derive(
        version=baseline,
        changes={"system_prompt": "You are a test agent. Reply in capitals."},
        author=alice,
    )
    dataset = Dataset.objects.create(name="greetings")
    for text in ("hello there", "12345", "good morning"):
        DatasetItem.objects.create(
            dataset=dataset, input=text, reference=f"You said: {text}", source="api"
        )

    page = login(browser, base_url, "bob", path="/experiments/")
    problems = watch_console(page)
    form = page.locator("#experiment-form")
    form.locator("input[name=name]").fill("capitals")
    form.locator("select[name=dataset]").select_option(str(dataset.pk))
    form.locator("select[name=baseline]").select_option(str(baseline.pk))
    form.locator("select[name=others]").select_option([str(shouting.pk)])
    form.locator("input[name=threshold]").fill("0.9")
    form.locator("input[name=exact]").check()
    form.locator("input[name=contains]").fill("You said")
    form.locator("button.primary").click()
    experiment = Experiment.objects.get(name="capitals")
    page.wait_for_url(f"{base_url}/experiments/{experiment.pk}/")

    page.locator("#run-experiment").click()
    expect(page.locator("[data-experiment-status]")).to_have_text("running")
    # Progress comes in without a reload, until the end.
    expect(page.locator("[data-experiment-status]")).to_have_text("finished", timeout=90_000)
    expect(page.locator("[data-progress]")).to_have_text("6 / 6")

    rows = page.locator("#variants tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("[data-score]")).to_have_text("1.00")
    expect(rows.nth(1).locator("[data-score]")).to_have_text("0.00")
    expect(rows.nth(1).locator("[data-regressions]")).to_have_text("3")
    expect(rows.nth(1).locator("[data-gate-flag]")).to_be_visible()
    expect(rows.nth(0).locator("[data-gate-flag]")).to_have_count(0)
    # Per item: under capitals "You said" is lost on every item.
    expect(page.locator("#items td[data-regressed]")).to_have_count(3)
    expect(page.locator("#items tbody tr").first).to_contain_text("YOU SAID: HELLO THERE")
    screenshot(page, "experiment-comparison")
    assert problems == []
