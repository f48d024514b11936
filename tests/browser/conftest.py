"""Headless Debian Chromium driven by Playwright against the real ASGI server, a real worker
and the dev model. `playwright install` cannot download here: we launch /usr/bin/chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.services import python_tools_sync

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PASSWORD = "correct horse battery staple"
SCREENSHOTS = Path(__file__).resolve().parent.parent.parent / "artifacts" / "screenshots"


@pytest.fixture
def browser(web, worker) -> Iterator:  # type: ignore[no-untyped-def]
    from django.db import connections
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # plain synchronous code between browser steps. Set only after the servers started, so
    # the web and worker processes keep Django's async-safety checks.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            # Django keeps its connections per asyncio context, and Playwright's loop makes
            # one: a connection left here by an earlier journey may since have been ended
            # (suites stop Postgres or end its backends on purpose). Start and end fresh.
            connections.close_all()
            yield chromium
            connections.close_all()
            chromium.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def base_url(web) -> str:  # type: ignore[no-untyped-def]
    return f"http://{web}"


@pytest.fixture
def chat_agent(dev_agent):  # type: ignore[no-untyped-def]
    dev_agent.name = "Support bot"
    dev_agent.save()
    dev_agent.tools.add(*python_tools_sync())
    return dev_agent


def login(browser, base_url: str, username: str, path: str = "/console/", **context_options):  # type: ignore[no-untyped-def]
    context = browser.new_context(**context_options)
    page = context.new_page()
    page.goto(f"{base_url}/login/?next={path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}{path}*")
    return page


def screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
