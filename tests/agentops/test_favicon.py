"""Every page names a small icon, and /favicon.ico (asked for by pages that name none) finds it."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client


@pytest.mark.django_db
def test_the_favicon_is_found(client: Client, alice):  # type: ignore[no-untyped-def]
    answer = client.get("/favicon.ico")
    assert answer.status_code == 301 and answer["Location"] == "/static/agentops/favicon.svg"
    icon = finders.find("agentops/favicon.svg")
    assert icon and "<svg" in Path(icon).read_text()
    client.force_login(alice)
    assert 'rel="icon" href="/static/agentops/favicon.svg"' in client.get("/").content.decode()
