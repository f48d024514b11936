"""Home on a fresh install gives the next steps: the demo agent in Console, the development
model's phrases (each one it understands), inviting an operator, an API key. It goes once a
conversation has run."""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client

from agentops.devmodel.server import HANDOFF_RE, INLINE_FAULT_RE
from agentops.models import Run
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db


def test_a_fresh_install_shows_the_first_steps_until_a_conversation_runs(alice):
    client = Client()
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert "First steps" in page and "data-first-steps" in page
    for link in ('href="/console/"', 'href="/operators/"', 'href="/users/"', 'href="/account/"'):
        assert link in page
    phrases = [html.unescape(p) for p in re.findall(r"<code>(.*?)</code>", page)]
    assert 'call echo {"text": "hi"}' in phrases and "loop" in phrases
    assert any(HANDOFF_RE.search(p) for p in phrases)
    faults = {m.group(1) for p in phrases for m in [INLINE_FAULT_RE.search(p)] if m}
    assert faults == {"500", "429", "slow", "malformed"}

    session = SessionFactory()
    Run.objects.create(session=session, agent=session.agent)
    assert "data-first-steps" not in client.get("/").content.decode()
