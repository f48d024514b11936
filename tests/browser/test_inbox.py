"""An operator's unread count and notifications in a real browser (live, and right after the
socket drops), and the queue with a few hundred handoffs: pages, filters, search, bulk close,
live changes that respect the filter."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from agentops.models import AuditEntry, Handoff, HandoffStatus, NotificationSettings, Team
from agentops.operators.assignment.services import handoff_claim
from agentops.operators.work.services import handoff_close
from agentops.runtime.services import session_post_message
from tests.agentops.operators.helpers import make_handoff
from tests.browser.conftest import login, screenshot
from tests.browser.test_streams import own_web  # noqa: F401 - the fixture
from tests.factories import AgentFactory
from tracing.platform.live import OPS_GROUP, broadcast, wait_sent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Records the notifications shown and the sounds played (the browser's own, still called).
SPIES = """
window.__notes = [];
window.__sounds = [];
const RealNotification = window.Notification;
class SpyNotification extends RealNotification {
  constructor(title, options) {
    window.__notes.push(title + " | " + ((options && options.body) || ""));
    super(title, options);
  }
}
Object.defineProperty(SpyNotification, "permission", { get: () => RealNotification.permission });
SpyNotification.requestPermission = (...a) => RealNotification.requestPermission(...a);
window.Notification = SpyNotification;
const realPlay = HTMLMediaElement.prototype.play;
HTMLMediaElement.prototype.play = function () { window.__sounds.push(this.src); return realPlay.call(this); };
"""


def arrives(**extra) -> Handoff:  # type: ignore[no-untyped-def]
    """A handoff as the runtime announces it (the runtime's own event on the ops group)."""
    handoff = make_handoff(**extra)
    broadcast(OPS_GROUP, {"kind": "handoff.created", "handoff_id": handoff.pk})
    wait_sent()
    return handoff


def test_it_counts_unread_live_and_right_after_a_reconnect(
    browser,
    own_web,  # noqa: F811
    bob,
    console_errors_expected,
):
    # The web server is stopped on purpose: the pages' requests meanwhile fail.
    console_errors_expected(r"ERR_CONNECTION_REFUSED|htmx:(sendError|afterRequest)")
    first = make_handoff(reason="first one")
    asked = login(browser, own_web.url, "bob", "/operators/")
    expect(asked.locator("[data-notify-permission]")).to_be_visible()
    assert asked.evaluate("() => Notification.permission") == "default"  # never asked on load
    asked.context.close()

    page = login(browser, own_web.url, "bob", "/operators/", permissions=["notifications"])
    page.context.add_init_script(SPIES)
    page.reload()
    badge = page.locator("nav [data-unread-count]")
    expect(page).to_have_title("(1) Takeover queue · AgentOps")
    expect(badge).to_have_text("1")
    expect(page.locator("[data-notify-state]")).to_have_text("browser notifications on")
    assert page.evaluate("() => window.__notes") == []  # what was there at load is no news

    page.locator("[data-notify-sound]").check()
    expect(page.locator("[data-notify-sound]")).to_be_checked()
    for _ in range(50):
        if NotificationSettings.objects.filter(user=bob, sound=True).exists():
            break
        page.wait_for_timeout(100)
    assert NotificationSettings.objects.get(user=bob).sound

    second = arrives(reason="second one")
    expect(page).to_have_title("(2) Takeover queue · AgentOps")
    expect(badge).to_have_text("2")
    page.wait_for_function("() => window.__notes.length === 1")
    assert page.evaluate("() => window.__notes") == [
        "AgentOps · 2 unread | A handoff is waiting in your queue."
    ]
    sounds = page.evaluate("() => window.__sounds")
    assert len(sounds) == 1 and re.search(r"/static/operators/notify\.\w*\.?wav$", sounds[0])
    assert page.request.get(sounds[0]).status == 200

    # A user writes in a conversation bob has claimed (and opened, at claim time).
    handoff_claim(handoff_id=second.pk, user=bob)
    other = login(browser, own_web.url, "bob", f"/operators/handoffs/{second.pk}/")
    expect(other).to_have_title(f"(1) Handoff {second.pk} · AgentOps")
    other.context.close()
    expect(page).to_have_title("(1) Takeover queue · AgentOps")
    session_post_message(session=second.session, content="are you still there?")
    wait_sent()
    expect(page).to_have_title("(2) Takeover queue · AgentOps")
    page.wait_for_function("() => window.__notes.length === 2")
    assert page.evaluate("() => window.__notes")[1].endswith(
        "An end user wrote in one of your conversations."
    )

    # The socket drops (the server restarts); a handoff arrives meanwhile, unannounced.
    def meanwhile() -> None:
        expect(page.locator("body")).to_have_attribute("data-inbox", "reconnecting")
        make_handoff(reason="while away")

    own_web.restart(meanwhile)
    expect(page.locator("body")).to_have_attribute("data-inbox", "live")
    expect(page).to_have_title("(3) Takeover queue · AgentOps")
    expect(badge).to_have_text("3")

    page.goto(f"{own_web.url}/operators/handoffs/{first.pk}/")
    expect(page).to_have_title(f"(2) Handoff {first.pk} · AgentOps")


def test_it_pages_filters_searches_and_bulk_closes_hundreds_live(browser, base_url, alice):
    agent = AgentFactory(name="Support bot")
    billing = Team.objects.create(slug="billing", name="Billing")
    Team.objects.create(slug="sales", name="Sales")
    for i in range(240):
        make_handoff(agent=agent, team=billing if i % 3 == 0 else None, reason=f"case {i}")
    refund = make_handoff(agent=agent, team=billing, reason="money back")
    session_post_message(session=refund.session, content="I need a refund for order 881")
    page = login(browser, base_url, "alice", "/operators/")
    page.on("dialog", lambda dialog: dialog.accept())
    count = page.locator("[data-open-count]")
    cards = page.locator("li.handoff")
    expect(count).to_have_text("241")
    expect(cards).to_have_count(50)
    expect(page.locator("[data-queue-pager]")).to_contain_text("page 1 of 5")

    page.select_option("select[name=team]", "billing")
    expect(count).to_have_text("81")
    expect(page).to_have_url(re.compile(r".*team=billing.*"))
    page.locator("[data-queue-pager] a[rel=next]").click()
    expect(page.locator("[data-queue-pager]")).to_contain_text("page 2 of 2")
    expect(cards).to_have_count(31)
    page.locator("[data-queue-pager] a[rel=prev]").click()
    expect(cards).to_have_count(50)
    expect(page.locator("[data-live-status]")).to_contain_text("live")
    screenshot(page, "queue_filtered")

    # Live: a handoff outside the filter does not show; one inside does, where it belongs.
    box = page.locator(f'input[data-select][value="{cards.nth(3).get_attribute("data-handoff")}"]')
    box.check()
    sales = arrives(agent=agent, team=Team.objects.get(slug="sales"), priority=1)
    urgent = arrives(agent=agent, team=billing, priority=1, reason="urgent billing")
    expect(count).to_have_text("82")
    expect(cards.first).to_have_attribute("data-handoff", str(urgent.pk))
    expect(page.locator(f'li[data-handoff="{sales.pk}"]')).to_have_count(0)
    expect(box).to_be_checked()  # a live refresh keeps the selection
    box.uncheck()

    handoff_claim(handoff_id=urgent.pk, user=alice)
    handoff_close(handoff=urgent, user=alice)
    wait_sent()
    expect(count).to_have_text("81")
    expect(page.locator(f'li[data-handoff="{urgent.pk}"]')).to_have_count(0)

    page.fill("input[name=q]", "refun")
    expect(count).to_have_text("1")
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-handoff", str(refund.pk))
    page.fill("input[name=q]", "")
    expect(count).to_have_text("81")

    page.locator("[data-select-page]").check()
    page.locator("button[data-bulk-close]").click()
    expect(page.locator(".flash")).to_contain_text("Closed 50 conversations.")
    expect(page).to_have_url(re.compile(r".*team=billing.*"))
    expect(count).to_have_text("31")
    assert AuditEntry.objects.filter(action="handoff.close", detail__bulk=True).count() == 50
    open_billing = Handoff.objects.filter(status=HandoffStatus.OPEN, team=billing).count()
    assert open_billing == 31
    assert Handoff.objects.filter(status=HandoffStatus.OPEN).count() == 241 + 1 - 50 - 0
