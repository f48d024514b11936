"""Headless Debian Chromium driven by Playwright against the real ASGI server, a real worker
and the dev model. `playwright install` cannot download here: we launch /usr/bin/chromium.

A journey is clean or it fails: any error in a page's console (a CSP refusal, an uncaught
exception, a resource that failed to load) and any ERROR line (or traceback) in the web
server's log fail the test at teardown. A test that provokes one on purpose says so with
`console_errors_expected(pattern)`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from agentops.testing.processes import Proc, child_env, free_port, start_web
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
# What a page shows after a run (the worker, the model, the live event) can take longer than
# Playwright's 5 s on a loaded 2-core machine; an expectation met sooner returns at once.
expect.set_options(timeout=15_000)


SERVER_ERROR = re.compile(
    r"\[(error|critical)\s*\]|^(ERROR|CRITICAL):|Traceback \(most recent call last\)", re.M
)


@pytest.fixture(scope="module")
def web_process(django_db_setup: None) -> Iterator[tuple[str, Proc]]:
    """The ASGI server, as in tests/conftest.py, once per module: its address and process."""
    port = free_port()
    proc = start_web(child_env(), port)
    yield f"127.0.0.1:{port}", proc
    proc.stop()


@pytest.fixture
def web(transactional_db: None, web_process: tuple[str, Proc]) -> Iterator[str]:
    """The module's ASGI server; what it logs during the test must hold no ERROR line."""
    address, proc = web_process
    start = len(proc.output())
    yield address
    output = proc.output()[start:]
    errors = [m.start() for m in SERVER_ERROR.finditer(output)]
    if errors:
        pytest.fail(f"the web server logged errors:\n{output[max(errors[0] - 2000, 0) :]}")


class WatchedBrowser:
    """The browser, with every context it opens watched for console errors and page errors."""

    def __init__(self, browser: Any, errors: list[str]) -> None:
        self._browser = browser
        self._errors = errors

    def _watch(self, context: Any) -> Any:
        def console(message: Any) -> None:
            if message.type == "error":
                where = message.location.get("url", "")
                self._errors.append(f"console error: {message.text} ({where})")

        context.on("console", console)
        context.on("weberror", lambda error: self._errors.append(f"page error: {error.error}"))
        return context

    def new_context(self, **options: Any) -> Any:
        return self._watch(self._browser.new_context(**options))

    def new_page(self, **options: Any) -> Any:
        context = self.new_context(**options)
        page = context.new_page()
        page.on("close", lambda _page: context.close())
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)


@pytest.fixture
def console_errors_expected() -> Callable[[str], None]:
    """Call with a regular expression: console errors matching it are part of the test."""
    expected: list[re.Pattern[str]] = []

    def expect(pattern: str) -> None:
        expected.append(re.compile(pattern))

    expect.patterns = expected  # type: ignore[attr-defined]
    return expect


@pytest.fixture
def browser(web, worker, console_errors_expected) -> Iterator:  # type: ignore[no-untyped-def]
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
            errors: list[str] = []
            yield WatchedBrowser(chromium, errors)
            connections.close_all()
            chromium.close()
            unexpected = [
                error
                for error in errors
                if not any(p.search(error) for p in console_errors_expected.patterns)
            ]
            if unexpected:
                pytest.fail("the browser reported errors:\n" + "\n".join(unexpected))
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
