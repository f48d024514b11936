"""The embeddable chat in real browsers: a host page on another origin embeds the widget; an
end user chats (streamed), is handed off, sees an operator (second browser context) join and
reply live, and the agent again after hand-back. A returning visitor sees their history, a
stranger does not; another origin shows no launcher and cannot frame it; untrusted text stays inert."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from agentops.models import Handoff, HandoffRating, HandoffStatus, Message, Role, Session
from agentops.testing.processes import free_port
from agentops.widget.demo import demo_server
from agentops.widget.services import widget_key_create
from tests.agentops.console.test_views import XSS
from tests.browser.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def host(base_url, chat_agent) -> Iterator[tuple[str, object]]:  # type: ignore[no-untyped-def]
    """A shop's page on another origin (another port) with the widget snippet."""
    port = free_port()
    key, secret = widget_key_create(
        agent=chat_agent,
        name="Shop",
        allowed_origins=[f"http://127.0.0.1:{port}"],
        actor=None,
    )
    server = demo_server(
        port=port, product=base_url, agent=chat_agent.slug, key=key.public_key, secret=secret
    )
    yield f"http://127.0.0.1:{port}", key
    server.shutdown()


def open_widget(browser, url: str, **context_options):  # type: ignore[no-untyped-def]
    page = browser.new_context(**context_options).new_page()
    page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
    page.goto(url)
    launcher = page.get_by_role("button", name="Open chat")
    launcher.click()
    chat = page.frame_locator("iframe[title=Chat]")
    expect(chat.locator("#aow")).to_have_attribute("data-connected", "1")
    return page, chat


def send(chat, text: str) -> None:  # type: ignore[no-untyped-def]
    chat.locator("#aow-input").fill(text)
    chat.locator("#aow-input").press("Enter")


def test_it_chats_hands_off_to_an_operator_and_back_through_the_widget(
    browser, base_url, host, chat_agent, devmodel, model_name, bob
):
    host_url, _ = host
    devmodel.script(model_name, faults=[{"stream_delay": 0.15}])
    page, chat = open_widget(browser, host_url)

    send(chat, "hello from the shop")
    expect(chat.locator("[data-streaming]")).to_contain_text("You said:")  # tokens arriving
    answer = chat.locator(".aow-assistant .aow-body", has_text="You said: hello from the shop")
    expect(answer).to_have_count(1)
    expect(chat.locator("[data-streaming]")).to_have_count(0)
    expect(chat.locator("#aow-input")).to_have_value("")
    session = Session.objects.get()
    assert session.agent == chat_agent and session.external_user.startswith("key:")
    assert session.messages.get(role=Role.USER).author is None

    send(chat, "I want a human please")
    notice = chat.locator("#aow-notice")
    expect(notice).to_have_text("A person will join the conversation shortly.")

    operator = login(browser, base_url, "bob", "/operators/")
    card = operator.locator("li.handoff")
    expect(card).to_contain_text("The user asked: I want a human please")
    card.locator("button[data-claim]").click()
    operator.wait_for_url(re.compile(r".*/operators/handoffs/\d+/.*"))
    expect(notice).to_have_text("bob from the support team has joined.")

    # The end user's connection drops; the operator's reply sent meanwhile arrives once.
    chat.locator("#aow").evaluate("() => window.aowDrop()")
    operator.fill("#reply-content", "Hi, this is Bob from support.")
    operator.locator("#reply button[type=submit]").click()
    reply = chat.locator(".aow-operator")
    expect(reply.locator(".aow-body")).to_have_text("Hi, this is Bob from support.")
    expect(reply.locator(".aow-who")).to_have_text("bob (support team)")
    expect(chat.locator("#aow")).to_have_attribute("data-connected", "1")

    send(chat, "thanks, that helps")
    expect(operator.locator("li.msg-user .msg-body", has_text="thanks, that helps")).to_be_visible()
    screenshot(page, "widget_operator")
    operator.locator("button[data-hand-back]").click()
    operator.wait_for_url(f"{base_url}/operators/")
    expect(notice).to_have_text("You are chatting with Support bot again.")
    expect(
        chat.locator(".aow-assistant .aow-body", has_text="You said: thanks, that helps")
    ).to_have_count(1)
    assert Handoff.objects.get().status == HandoffStatus.RESOLVED
    stored = session.messages.filter(role__in=("user", "operator", "assistant")).exclude(content="")
    # Every message once, in order, across the dropped connection: no gap, no duplicate.
    assert chat.locator(".aow-msg .aow-body").all_text_contents() == [
        m.content for m in stored.order_by("seq")
    ]


def test_it_asks_for_a_rating_when_the_operator_closes_and_remembers_it(browser, host, bob):
    from agentops.operators.assignment.services import handoff_claim
    from agentops.operators.work.services import handoff_close

    host_url, _ = host
    page, chat = open_widget(browser, host_url)
    send(chat, "I want a human please")
    notice = chat.locator("#aow-notice")
    expect(notice).to_have_text("A person will join the conversation shortly.")
    rate = chat.locator("#aow-rate")
    expect(rate).to_be_hidden()
    handoff = Handoff.objects.get()
    handoff_claim(handoff_id=handoff.pk, user=bob)
    expect(notice).to_have_text("bob from the support team has joined.")
    expect(rate).to_be_hidden()  # only a closed conversation is rated
    handoff_close(handoff=Handoff.objects.get(pk=handoff.pk), user=bob)

    expect(rate).to_be_visible()  # live, as the operator closes it
    expect(rate.get_by_role("group", name="How did the support team do?")).to_be_visible()
    rate.get_by_text("4", exact=True).click()
    rate.get_by_label("A comment (optional)").fill("Quick <b>and</b> kind")
    rate.get_by_role("button", name="Send rating").click()
    expect(rate).to_contain_text("Thank you: you rated this conversation 4 of 5.")
    screenshot(page, "widget_rating")
    rating = HandoffRating.objects.get()
    assert (rating.handoff_id, rating.score, rating.comment) == (
        handoff.pk,
        4,
        "Quick <b>and</b> kind",
    )

    # Back later: the rating is remembered, and can be changed.
    page.reload()
    page.get_by_role("button", name="Open chat").click()
    chat = page.frame_locator("iframe[title=Chat]")
    rate = chat.locator("#aow-rate")
    expect(rate).to_contain_text("you rated this conversation 4 of 5.")
    rate.get_by_role("button", name="Change").click()
    rate.get_by_text("2", exact=True).click()
    rate.get_by_role("button", name="Send rating").click()
    expect(rate).to_contain_text("you rated this conversation 2 of 5.")
    assert HandoffRating.objects.get().score == 2

    # Writing again starts a new conversation, which has nothing to rate yet.
    send(chat, "one more question")
    expect(chat.locator(".aow-assistant .aow-body", has_text="one more question")).to_be_visible()
    expect(rate).to_be_hidden()


def test_it_shows_a_returning_visitor_their_history_and_a_stranger_nothing(
    browser, host, chat_agent
):
    host_url, key = host
    page, chat = open_widget(browser, host_url)
    send(chat, "my order number is 1234")
    expect(chat.locator(".aow-assistant .aow-body", has_text="number is 1234")).to_be_visible()

    page.reload()
    page.get_by_role("button", name="Open chat").click()
    chat = page.frame_locator("iframe[title=Chat]")
    expect(chat.locator(".aow-user .aow-body")).to_have_text("my order number is 1234")

    _, stranger = open_widget(browser, host_url)
    expect(stranger.locator("#aow")).to_have_attribute("data-connected", "1")
    expect(stranger.locator(".aow-msg")).to_have_count(0)

    # A signed-in user of the shop (identity verified server-side) has their own history.
    _, alice = open_widget(browser, f"{host_url}/?user=alice")
    expect(alice.locator(".aow-msg")).to_have_count(0)
    send(alice, "hi, alice here")
    expect(alice.locator(".aow-assistant .aow-body", has_text="alice here")).to_be_visible()
    alice_id = f"key:{key.pk}:user:alice"
    assert Session.objects.filter(agent=chat_agent, external_user=alice_id).count() == 1
    assert Session.objects.filter(external_user__startswith=f"key:{key.pk}:visitor:").count() == 1


def test_it_shows_nothing_broken_on_an_origin_the_key_does_not_allow(
    browser, base_url, host, alice
):
    """No launcher and no blank panel there (issue 21, item 12; the frame's CSP still refuses
    such a page, tests/agentops/widget/test_views.py); the key's admin sees the origin and
    can allow it."""
    _, key = host
    port = free_port()
    server = demo_server(
        port=port, product=base_url, agent=key.agent.slug, key=key.public_key, secret="x"
    )
    try:
        page = browser.new_context().new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator("[data-agentops-widget]")).to_have_attribute(
            "data-agentops-widget", "unavailable"
        )
        expect(page.get_by_role("button", name="Open chat")).to_be_hidden()
        page.evaluate("() => window.AgentOpsWidget.open()")
        expect(page.locator("iframe")).to_have_count(0)
        expect(page.get_by_role("dialog", name="Chat")).to_be_hidden()
        screenshot(page, "widget_refused_origin")
        assert not Session.objects.exists()

        admin = login(browser, base_url, "alice", "/widget/keys/")
        refused = admin.locator(f'tr[data-key="{key.public_key}"] [data-refused-origins]')
        expect(refused).to_contain_text(f"http://127.0.0.1:{port}")
        screenshot(admin, "widget_keys_refused_origin")
        # The admin allows it there: the next visitor of that page gets the chat.
        expect(refused).to_contain_text("unverified")
        refused.locator("summary").click()  # Allow asks first
        refused.get_by_role("button", name=f"Yes, allow http://127.0.0.1:{port}").click()
        expect(refused).to_contain_text("None in the last 7 days")
        page = browser.new_context().new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_role("button", name="Open chat").click()
        chat = page.frame_locator("iframe[title=Chat]")
        expect(chat.locator("#aow")).to_have_attribute("data-connected", "1")
    finally:
        server.shutdown()


def test_it_renders_untrusted_text_inert(browser, host, chat_agent, bob):
    host_url, _ = host
    _, chat = open_widget(browser, host_url)
    send(chat, XSS)
    expect(chat.locator(".aow-assistant .aow-body")).to_have_text(f"You said: {XSS}")
    expect(chat.locator(".aow-user .aow-body")).to_have_text(XSS)
    session = Session.objects.get()
    from agentops.runtime.checkpoint import messages_append

    messages_append(
        session_id=session.pk,
        messages=[Message(role=Role.OPERATOR, content=XSS, author=bob)],
    )
    expect(chat.locator(".aow-operator .aow-body")).to_have_text(XSS)
    assert chat.locator("img, script:not([src])").count() == 0


def test_it_works_with_the_keyboard_and_fills_a_phone_screen(browser, host):
    host_url, _ = host
    page = browser.new_context(viewport={"width": 375, "height": 667}, has_touch=True).new_page()
    page.goto(host_url)
    launcher = page.get_by_role("button", name="Open chat")
    launcher.focus()
    page.keyboard.press("Enter")
    chat = page.frame_locator("iframe[title=Chat]")
    expect(chat.locator("#aow")).to_have_attribute("data-connected", "1")
    expect(chat.locator("#aow-input")).to_be_focused()
    box = page.locator("iframe[title=Chat]").bounding_box()
    assert box is not None and (box["width"], box["height"]) == (375, 667)
    page.keyboard.type("typed with keys")
    page.keyboard.press("Enter")
    expect(chat.locator(".aow-user .aow-body")).to_have_text("typed with keys")
    screenshot(page, "widget_phone")
    page.keyboard.press("Escape")
    expect(page.locator("iframe[title=Chat]")).to_be_hidden()
    closed = page.get_by_role("button", name="Open chat")
    expect(closed).to_be_focused()
    expect(closed).to_have_attribute("aria-expanded", "false")
