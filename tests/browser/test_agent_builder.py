"""The agent builder in a real browser: create an agent, save, chat with the draft in the side
pane and watch its context fill, publish, read the diff, rate an answer."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agentops.models import Agent, Feedback, Run
from tests.browser.conftest import login, screenshot
from tools.services import python_tools_sync

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_builds_tries_publishes_and_diffs_an_agent(
    browser, base_url, dev_agent, devmodel, alice, console_errors_expected
):
    console_errors_expected(r"status of 400 \(Bad Request\) \(http://[^/]+/agents/new\)$")  # below
    endpoint = dev_agent.endpoint
    python_tools_sync()  # the built-in tools (`note` among them) as rows
    page = login(browser, base_url, "alice", "/agents/")
    page.click("text=New agent")
    page.fill("#id_slug", "helper")
    page.fill("#id_name", "Helper")
    page.fill("#id_system_prompt", "You help.\nBe brief.")
    page.select_option("#id_endpoint", str(endpoint.pk))
    page.fill("#id_max_steps", "0")
    page.click("button[name=save]")
    # A bad value comes back as an error beside its field; nothing is stored.
    expect(page.locator('[data-error-for="max_steps"]')).to_be_visible()
    assert not Agent.objects.filter(slug="helper").exists()
    page.fill("#id_max_steps", "6")
    page.fill("#id_note", "first draft")
    page.click("button[name=save]")
    page.wait_for_url(f"{base_url}/agents/helper/")
    expect(page.locator(".flash")).to_contain_text("Saved as v1")

    # Chat with the draft (v1, unpublished) in the side pane.
    page.click("[data-draft-start]")
    expect(page.locator("[data-draft-version]")).to_have_text("v1")
    expect(page.locator("[data-convo]")).to_have_attribute("data-connected", "1")
    context = page.locator("#draft-context")
    expect(context).to_contain_text("You help.")
    before = int(context.get_attribute("data-context-tokens") or 0)
    page.fill("#composer textarea", 'call note {"key": "goal", "value": "greet"}')
    page.click("#composer button[type=submit]")
    expect(page.locator("li.msg-assistant .msg-body").last).to_contain_text("Noted goal")
    expect(page.locator("[data-empty]")).to_be_hidden()  # "No messages yet" is gone
    # After the run the context pane refreshes: the turn and the working note are in it.
    expect(page.locator("#draft-context [data-notes]")).to_contain_text("greet")
    after = int(page.locator("#draft-context").get_attribute("data-context-tokens") or 0)
    assert after > before
    expect(page.locator("#draft-context")).to_contain_text("call note")
    run = Run.objects.get(agent__slug="helper")
    assert run.agent_version is not None and run.agent_version.number == 1
    screenshot(page, "agent-builder")

    # Rate the answer beside the message.
    page.locator("form[data-thumbs] button[value=up]").last.click()
    expect(page.locator("[data-thumbs-saved]").last).to_be_visible()
    assert Feedback.objects.get().rating == "up"

    # Change the instructions and publish: v2, with a readable diff against v1.
    page.fill("#id_system_prompt", "You help.\nBe thorough.")
    page.fill("#id_note", "more detail")
    page.click("button[name=publish]")
    expect(page.locator(".flash")).to_contain_text("Saved as v2 and published")
    expect(page.locator("[data-draft-version]")).to_have_text("v2")
    page.click("text=Versions")
    v2 = page.locator('li.version[data-version="2"]')
    expect(v2.locator("[data-published]")).to_be_visible()
    expect(v2).to_contain_text("more detail")
    expect(v2.locator(".line-diff .del")).to_have_text("-Be brief.")
    expect(v2.locator(".line-diff .add")).to_have_text("+Be thorough.")
    screenshot(page, "agent-versions")

    # Roll back in one click.
    page.click('[data-publish="1"]')
    expect(page.locator(".flash")).to_contain_text("Rolled back to v1")
    expect(page.locator('li.version[data-version="1"] [data-published]')).to_be_visible()
    assert Agent.objects.get(slug="helper").published_version.number == 1


def test_after_a_rollback_the_form_and_the_draft_chat_show_the_same_version(
    browser, base_url, dev_agent, alice
):
    """Issue 21 item 8: the form showed v1 after a rollback while the draft chat ran v2, and
    saving from it undid v2."""
    from agentops.agents.services import agent_create, agent_update

    v1 = agent_create(
        slug="desk",
        config={"name": "Desk", "endpoint": dev_agent.endpoint.pk, "system_prompt": "Be brief."},
        author=alice,
        publish=True,
    )
    agent_update(
        agent=v1.agent, changes={"system_prompt": "Be thorough."}, author=alice, publish=True
    )
    page = login(browser, base_url, "alice", "/agents/desk/")
    page.click("[data-draft-start]")
    expect(page.locator("[data-draft-version]")).to_have_text("v2")
    page.goto(f"{base_url}/agents/desk/versions/")
    page.click('[data-publish="1"]')
    expect(page.locator(".flash")).to_contain_text("Rolled back to v1")

    page.goto(f"{base_url}/agents/desk/")
    expect(page.locator("[data-editing]")).to_contain_text("Editing v2 (latest)")
    expect(page.locator("[data-published-version]")).to_contain_text("Published: v1")
    expect(page.locator("[data-draft-version]")).to_have_text("v2")
    expect(page.locator("#id_system_prompt")).to_have_value("Be thorough.")

    page.fill("#id_name", "Help desk")
    page.click("button[name=save]")
    expect(page.locator(".flash")).to_contain_text("Saved as v3")
    expect(page.locator("[data-draft-version]")).to_have_text("v3")
    expect(page.locator("[data-editing]")).to_contain_text("Editing v3 (latest)")
    expect(page.locator("#id_system_prompt")).to_have_value("Be thorough.")
    v3 = Agent.objects.get(slug="desk").versions.get(number=3)
    assert v3.config["system_prompt"] == "Be thorough." and v3.config["name"] == "Help desk"
    assert Agent.objects.get(slug="desk").published_version.number == 1
