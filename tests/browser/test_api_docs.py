"""The API docs page in a real browser: Swagger UI from the product's own static files, under
the product's CSP, with no request leaving the server."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.agentops.observe.test_browser import watch_console
from tests.browser.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_renders_the_api_docs_from_own_static_files_under_the_csp(browser, base_url):
    context = browser.new_context()
    page = context.new_page()
    problems = watch_console(page)
    hosts: set[str] = set()
    page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))

    response = page.goto(f"{base_url}/api/docs")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "script-src 'self'" in csp

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("AgentOps API")
    operation = page.locator(
        ".opblock-summary-path", has_text="/api/sessions/{session_id}/messages"
    )
    expect(operation.first).to_be_visible()
    operation.first.click()
    expect(page.locator(".opblock.is-open .responses-table")).to_be_visible()
    screenshot(page, "api-docs")
    assert hosts == {urlsplit(base_url).netloc}
    assert problems == []
