"""The one client of the streams (static/agentops/stream.js) in a real browser, on the
console and on a live page: after the web server restarts both reconnect and catch up with
what happened meanwhile; a stream the server refuses says why and stays closed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.sessions.models import Session as LoginSession
from playwright.sync_api import expect

from agentops.models import Message, Role, Run, RunStatus
from agentops.runtime.checkpoint import messages_append
from agentops.testing.processes import child_env, free_port, start_web
from tests.browser.conftest import login
from tests.factories import SessionFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class RestartableWeb:
    """A web server of this test's own, on a fixed port, that it stops and starts again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = start_web(child_env(), self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restart(self, between=lambda: None) -> None:  # type: ignore[no-untyped-def]
        self.proc.stop()
        between()
        self.proc = start_web(child_env(), self.port)


@pytest.fixture
def own_web(transactional_db) -> Iterator[RestartableWeb]:  # type: ignore[no-untyped-def]
    web = RestartableWeb()
    yield web
    web.proc.stop()


def test_it_reconnects_resumes_and_stops_when_refused(
    browser, own_web, bob, charlie, console_errors_expected
):
    # The web server is stopped on purpose: the pages' requests meanwhile fail.
    console_errors_expected(r"ERR_CONNECTION_REFUSED|htmx:(sendError|afterRequest)")
    session = SessionFactory()
    messages_append(session_id=session.pk, messages=[Message(role=Role.USER, content="first")])
    console = login(browser, own_web.url, "bob", f"/console/sessions/{session.pk}/")
    convo = console.locator("[data-convo]")
    expect(convo).to_have_attribute("data-connected", "1")
    runs = login(browser, own_web.url, "charlie", "/runs/")
    live = runs.locator("[data-live-ws]")
    expect(live).to_have_attribute("data-live-connected", "1")

    def meanwhile() -> None:
        expect(convo).to_have_attribute("data-connected", "0")
        expect(console.locator("[data-convo-live]")).to_have_text("reconnecting…")
        expect(live).to_have_attribute("data-live-connected", "0")
        messages_append(
            session_id=session.pk,
            messages=[Message(role=Role.OPERATOR, content="sent while the server was away")],
        )
        Run.objects.create(session=session, agent=session.agent, status=RunStatus.SUCCEEDED)

    own_web.restart(meanwhile)
    expect(convo).to_have_attribute("data-connected", "1")
    expect(console.locator("li.msg-operator .msg-body")).to_have_text(
        "sent while the server was away"
    )
    assert console.locator("li.msg[data-seq]").count() == 2
    expect(live).to_have_attribute("data-live-connected", "1")
    run = Run.objects.get()
    expect(runs.locator(f'tr[data-run="{run.pk}"]')).to_have_count(1)

    def refuse() -> None:
        bob.groups.clear()  # signed in, without a role
        LoginSession.objects.filter(
            pk__in=[
                s.pk
                for s in LoginSession.objects.all()
                if s.get_decoded().get("_auth_user_id") == str(charlie.pk)
            ]
        ).delete()  # signed out

    own_web.restart(refuse)
    expect(convo).to_have_attribute("data-refused", "4403")
    expect(console.locator("[data-convo-live]")).to_have_text("not allowed to follow this")
    expect(live).to_have_attribute("data-live-refused", "4401")
    expect(runs.locator("[data-live-status]")).to_contain_text("sign in again")
    assert convo.get_attribute("data-connected") == "0"
