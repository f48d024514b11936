"""People read names and sentences, not internals: team names in every dropdown, one style of
webhook event label, audit details as `key: value` (no Python reprs), no "off shift" for a
team that has no shifts, and no pointer to the Django admin for what the builder does."""

from __future__ import annotations

import pytest
from django.test import Client

from agentops.models import AuditEntry, Team
from agentops.webhooks.forms import WebhookEndpointForm
from agentops.webhooks.models import WebhookEventType

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def test_teams_are_named_by_name_in_every_dropdown(alice, dev_agent):
    Team.objects.create(slug="billing", name="Billing desk")
    Team.objects.create(slug="tier-2", name="Second line")
    client = signed_in(alice)
    for url in ("/teams/billing/", f"/agents/{dev_agent.slug}/"):
        page = client.get(url).content.decode()
        assert ">Second line</option>" in page, url
        assert ">tier-2</option>" not in page, url


def test_the_teams_page_says_no_shift_for_a_team_without_hours(alice, bob):
    team = Team.objects.create(slug="always", name="Always on", assignment_mode="round_robin")
    team.members.add(bob)
    page = signed_in(alice).get("/teams/").content.decode()
    assert "off shift" not in page and "off hours" not in page and "no hours set" in page
    assert "Django admin" not in page and "agent builder" in page


def test_webhook_events_are_labelled_in_one_style():
    labels = dict(WebhookEndpointForm().fields["event_types"].choices)
    assert set(labels) == set(WebhookEventType.values)
    for value, label in labels.items():
        assert label.startswith(f"{value}: ") and label[len(value) + 2 :].islower(), label


def test_the_audit_log_shows_details_as_people_read_them(alice):
    AuditEntry.objects.create(
        actor=alice,
        action="team.update",
        target="billing",
        detail={"mode": "round_robin", "caps": {"bob": 2}, "working": True},
    )
    page = signed_in(alice).get("/operators/audit/").content.decode()
    detail = page.split('data-audit="team.update"', 1)[1].split("</tr>", 1)[0]
    for pair in ("mode: round_robin", "caps: {&quot;bob&quot;: 2}", "working: true"):
        assert pair in detail, detail
    assert "{&#x27;" not in page and "True" not in page


def test_a_handed_off_run_reads_the_same_on_the_server_as_live(alice):
    """The page's badge (the server's label) and the live update (console.js) say the same."""
    from pathlib import Path

    from agentops.models import Run, Session

    assert Run(status="handed_off").get_status_display() == "Handed off"
    assert Session(status="handed_off").get_status_display() == "Handed off"
    script = (Path(__file__).parents[2] / "static/console/console.js").read_text()
    assert 'handed_off: "Handed off"' in script
