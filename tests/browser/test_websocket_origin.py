"""A page of another origin on the same host cannot read the streams with a viewer's cookie,
and the console's own pages may open WebSockets only to their own origin (CSP)."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from agentops.models import Message, Run
from agentops.runtime.checkpoint import messages_append
from tests.browser.conftest import login
from tests.factories import SessionFactory, UserFactory
from tests.tools.servers import Handler, LoopbackServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SECRET = "my card ends 4411"

# What a page on http://127.0.0.1:<another port> would do with the viewer's cookie.
FOREIGN_PAGE = """<!doctype html><title>elsewhere</title><link rel="icon" href="data:,"><script>
window.results = {};
for (const path of %(paths)s) {
  const ws = new WebSocket(%(base)s + path);
  ws.onopen = () => { window.results[path] = "opened"; };
  ws.onmessage = (e) => { window.results[path] = "received " + e.data; };
  ws.onclose = () => { window.results[path] = window.results[path] || "refused"; };
}
</script>"""


@pytest.fixture
def foreign_site():
    server = LoopbackServer()
    yield server
    server.stop()


def test_it_keeps_the_streams_from_pages_of_another_origin(
    browser, base_url, web, foreign_site, console_errors_expected
):
    # The refusals this test provokes: the foreign page's handshakes, and the console page's
    # own socket to another origin, which its CSP blocks.
    console_errors_expected(r"Unexpected response code: 403 \(http://127\.0\.0\.1:\d+/page\)$")
    console_errors_expected(
        r"violates the following Content Security Policy directive: \"connect-src"
    )
    UserFactory(username="charlie", role="viewer")
    session = SessionFactory()
    messages_append(session_id=session.pk, messages=[Message(role="user", content=SECRET)])
    run = Run.objects.create(session=session, agent=session.agent)
    paths = [f"/ws/sessions/{session.pk}/", f"/ws/runs/{run.pk}/", "/ws/ops/"]

    page = login(browser, base_url, "charlie", path=f"/console/sessions/{session.pk}/")
    expect(page.locator("[data-convo]")).to_have_attribute("data-connected", "1")
    expect(page.locator(".msg-body", has_text=SECRET)).to_be_visible()

    @foreign_site.route("/page")
    def foreign_page(h: Handler) -> None:
        body = FOREIGN_PAGE % {"paths": json.dumps(paths), "base": json.dumps(f"ws://{web}")}
        h.send_bytes(200, body.encode(), "text/html")

    page.goto(foreign_site.url("/page"))
    page.wait_for_function(f"Object.keys(window.results).length === {len(paths)}")
    assert page.evaluate("window.results") == {path: "refused" for path in paths}

    page.goto(f"{base_url}/console/sessions/{session.pk}/")
    # A WebSocket to another port is a CSP violation (connect-src 'self'), reported as an event.
    page.evaluate(
        """(url) => {
            window.violated = null;
            document.addEventListener("securitypolicyviolation", (e) => {
                window.violated = e.effectiveDirective;
            });
            new WebSocket(url);
        }""",
        f"ws://127.0.0.1:{foreign_site.port}/",
    )
    page.wait_for_function("window.violated !== null", timeout=10_000)
    assert page.evaluate("window.violated") == "connect-src"
