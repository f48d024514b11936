"""A refusal is not a fault: a 403 (a page whose conversation went to another operator keeps
asking for its notes) is logged as one line, never with a traceback."""

from __future__ import annotations

import io
import logging

import pytest
from django.test import Client

from agentops.operators.assignment.services import handoff_claim
from tests.agentops.operators.helpers import make_handoff

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_refused_request_is_logged_without_a_traceback(alice, bob):
    handoff = make_handoff()
    handoff_claim(handoff_id=handoff.pk, user=alice)
    console = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    assert isinstance(console, logging.StreamHandler)
    sink = io.StringIO()
    previous = console.setStream(sink)
    try:
        client = Client()
        client.force_login(bob)
        assert client.get(f"/operators/handoffs/{handoff.pk}/notes").status_code == 403
    finally:
        console.setStream(previous)
    logged = sink.getvalue()
    assert "Forbidden (Permission denied): /operators/handoffs/" in logged
    assert "Traceback" not in logged and "PermissionDenied" not in logged, logged
