"""The console in a real browser: streamed answers, inline tool calls, reload, escaping."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agentops.models import Session, ToolCall
from tests.browser.conftest import login, screenshot
from tests.factories import UserFactory
from tracing.templatetags.tracing_tags import ms

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def start_session(page, agent, end_user: str) -> None:  # type: ignore[no-untyped-def]
    page.select_option("#id_agent", value=agent.slug)
    page.fill("input[name=external_user]", end_user)
    page.click("text=Start session")
    page.wait_for_url("**/console/sessions/**")
    expect(page.locator("[data-convo]")).to_have_attribute("data-connected", "1")


def send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.fill("#composer textarea", text)
    page.click("#composer button[type=submit]")


def test_it_streams_the_answer_and_shows_tool_calls_inline(
    browser, base_url, chat_agent, devmodel, model_name, bob
):
    devmodel.script(model_name, faults=[{"stream_delay": 0.15}])
    page = login(browser, base_url, "bob")
    expect(page.locator("text=No sessions yet")).to_be_visible()
    start_session(page, chat_agent, "erin")

    send(page, "hello there from the browser")
    streaming = page.locator("[data-stream-body]")
    expect(streaming).to_contain_text("You said:")  # partial text while tokens arrive
    answer = page.locator(
        "li.msg-assistant .msg-body", has_text="You said: hello there from the browser"
    )
    expect(answer).to_be_visible()
    expect(streaming).to_have_count(0)
    expect(page.locator("[data-run-badge]")).to_have_text("Succeeded")
    run_link = page.locator("[data-run-link]")
    expect(run_link).to_have_attribute("href", __import__("re").compile(r"^/runs/[0-9a-f-]{36}/$"))

    send(page, 'call echo {"text": "ping"}')
    call = page.locator("details.toolcall", has=page.locator(".tool-name", has_text="echo"))
    expect(call).to_have_count(1)
    expect(call.locator("[data-tc-status]")).to_have_text("succeeded")
    expect(call.locator("[data-tc-duration]")).to_contain_text(" ms")
    call.locator("summary").click()
    expect(call.locator("[data-tc-result]")).to_have_text("ping")
    expect(
        page.locator("li.msg-assistant .msg-body", has_text="Tool results: ping")
    ).to_be_visible()
    stored = ToolCall.objects.get(tool_name="echo")
    stored_ms = int((stored.finished_at - stored.started_at).total_seconds() * 1000)
    # The stored figure wins, written by the server's one renderer of a message.
    expect(call.locator("[data-tc-duration]")).to_have_text(ms(stored_ms))
    screenshot(page, "console")

    # A reload re-renders from the database and re-syncs from the stream: nothing twice.
    count = page.locator("li.msg[data-seq]").count()
    page.reload()
    expect(page.locator("[data-convo]")).to_have_attribute("data-synced", "1")
    assert page.locator("li.msg[data-seq]").count() == count
    seqs = page.locator("li.msg[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")
    assert len(seqs) == len(set(seqs))

    phone = login(
        browser,
        base_url,
        "bob",
        f"/console/sessions/{Session.objects.get().pk}/",
        viewport={"width": 390, "height": 844},
        is_mobile=True,
    )
    expect(
        phone.locator("li.msg-assistant .msg-body", has_text="Tool results: ping")
    ).to_be_visible()
    expect(phone.locator("[data-convo]")).to_have_attribute("data-connected", "1")
    screenshot(phone, "console-phone")


def test_it_renders_markup_from_people_and_the_model_as_text(browser, base_url, chat_agent, bob):
    payload = "<img src=x onerror=alert(1)> and <script>alert(1)</script>"
    page = login(browser, base_url, "bob")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    start_session(page, chat_agent, "<b>mallory</b>")
    send(page, payload)
    echoed = page.locator("li.msg-assistant .msg-body", has_text="You said: <img src=x")
    expect(echoed).to_have_text(f"You said: {payload}")
    expect(page.locator("li.msg-user .msg-body")).to_have_text(payload)
    assert page.locator(".messages img, .messages script, .messages b").count() == 0
    page.reload()
    expect(page.locator("li.msg-assistant .msg-body")).to_have_text(f"You said: {payload}")
    assert page.locator(".messages img, .messages script, .messages b").count() == 0
    expect(page.locator("li.msg-user .msg-role").first).to_have_text("<b>mallory</b>")
    page.wait_for_timeout(300)
    assert dialogs == []


def test_it_keeps_viewers_from_writing(browser, base_url, chat_agent, bob):
    UserFactory(username="victor", role="viewer")
    page = login(browser, base_url, "victor")
    expect(page.locator("text=You can read sessions")).to_be_visible()
    assert page.locator("text=Start session").count() == 0


LONG = " ".join(f"word{i:02d}" for i in range(40))  # streamed slowly: a run to cancel


def test_it_cancels_a_run_from_the_run_bar_and_takes_the_next_message(
    browser, base_url, chat_agent, devmodel, model_name, bob
):
    from agentops.models import Run, RunStatus

    devmodel.script(model_name, faults=[{"stream_delay": 0.3}])
    page = login(browser, base_url, "bob")
    start_session(page, chat_agent, "erin")
    cancel = page.locator("[data-run-cancel] button")
    expect(cancel).to_be_hidden()  # no run yet
    send(page, LONG)
    expect(page.locator("[data-stream-body]")).to_contain_text("You said:")
    expect(page.locator("[data-run-badge]")).to_have_text("Running")
    # While the agent answers, the composer takes nothing and says why, in words.
    expect(page.locator("#composer textarea")).to_be_disabled()
    expect(page.locator("[data-composer-busy]")).to_have_text(
        "The agent is answering; you can write again once it has."
    )
    cancel.click()
    expect(page.locator("[data-run-badge]")).to_have_text("Cancelled")
    expect(cancel).to_be_hidden()
    expect(page.locator("#composer textarea")).to_be_enabled()
    expect(page.locator("[data-composer-busy]")).to_be_hidden()
    run = Run.objects.get()
    assert run.status == RunStatus.CANCELLED
    assert page.url.endswith(f"/console/sessions/{run.session_id}/"), "stayed on the page"

    send(page, "hello again")  # no "wait for it or cancel it": the session takes it
    answer = page.locator("li.msg-assistant .msg-body", has_text="You said: hello again")
    expect(answer).to_be_visible(timeout=30_000)
    expect(page.locator("[data-run-badge]")).to_have_text("Succeeded")


def test_it_cancels_a_run_from_its_page(browser, base_url, chat_agent, devmodel, model_name, bob):
    from agentops.models import RunStatus
    from agentops.runtime.services import session_create, session_post_message

    devmodel.script(model_name, faults=[{"stream_delay": 0.3}])
    session = session_create(agent=chat_agent, external_user="erin")
    run = session_post_message(session=session, content=LONG)
    page = login(browser, base_url, "bob", path=f"/runs/{run.pk}/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("[data-run-cancel] button").click()
    expect(page.locator("#run-status")).to_have_text("Cancelled")
    expect(page.locator("[data-run-cancel]")).to_have_count(0)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_it_closes_the_composer_when_an_operator_closes_the_session(
    browser, base_url, chat_agent, bob
):
    from agentops.models import Handoff
    from agentops.operators.assignment.services import handoff_claim
    from agentops.operators.work.services import handoff_close

    page = login(browser, base_url, "bob")
    start_session(page, chat_agent, "erin")
    send(page, "I want a human please")
    expect(page.locator("[data-run-badge]")).to_have_text("Handed off")
    handoff = handoff_claim(handoff_id=Handoff.objects.get().pk, user=bob)
    handoff_close(handoff=handoff, user=bob)
    expect(page.locator("[data-closed-notice]")).to_be_visible()
    expect(page.locator("#composer textarea")).to_be_hidden()  # without a reload
    expect(page.locator("[data-composer-closed]")).to_be_visible()
