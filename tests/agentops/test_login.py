"""Login throttling (django-axes, settings.py) per account and per client address, recorded in
the audit log (agentops/signals.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F
from django.test import Client
from django.urls import reverse

from agentops.models import AuditEntry

PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.usefixtures("db")


def log_in(username: str, password: str, address: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
    return Client(REMOTE_ADDR=address).post(
        reverse("login"), {"username": username, "password": password}
    )


def test_it_locks_an_account_after_repeated_failures_from_any_address(settings, bob, charlie):
    settings.AXES_FAILURE_LIMIT = 5
    for i in range(4):
        assert log_in("bob", f"guess-{i}", f"10.0.0.{i + 1}").status_code == 200  # the form again
    locked = log_in("bob", "guess-4", "10.0.0.5")
    assert locked.status_code == 429
    body = locked.content.decode()
    assert "Too many failed logins for this account or from your address" in body
    assert "refused for 15 minutes" in body
    # The right password is refused now too, from anywhere.
    right = log_in("bob", PASSWORD, "10.0.0.6")
    assert right.status_code == 429 and "_auth_user_id" not in right.client.session
    entries = AuditEntry.objects.filter(action="login.locked_out", target="bob")
    assert entries.count() == 2  # the fifth failure, and the refused try after it
    assert {e.detail["ip_address"] for e in entries} == {"10.0.0.5", "10.0.0.6"}
    # Another account from one of those addresses is not affected.
    assert log_in("charlie", PASSWORD, "10.0.0.1").status_code == 302


def test_it_locks_a_client_address_that_tries_many_accounts(settings, bob, charlie):
    settings.AXES_FAILURE_LIMIT = 5
    for i in range(5):
        log_in(f"someone-{i}", "guess", "10.9.9.9")
    assert log_in("charlie", PASSWORD, "10.9.9.9").status_code == 429
    assert log_in("charlie", PASSWORD, "10.1.1.1").status_code == 302  # from elsewhere: fine
    assert AuditEntry.objects.filter(
        action="login.locked_out", detail__ip_address="10.9.9.9"
    ).exists()


def test_it_lets_the_account_in_again_after_the_lockout(settings, bob):
    settings.AXES_FAILURE_LIMIT = 3
    for i in range(3):
        log_in("bob", f"guess-{i}")
    assert log_in("bob", PASSWORD).status_code == 429
    from axes.models import AccessAttempt

    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))
    assert log_in("bob", PASSWORD).status_code == 302
