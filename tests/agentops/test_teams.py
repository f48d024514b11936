"""Teams (admins): members and working hours, who is on shift, and the team a handoff goes to."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from agentops.models import AuditEntry, Team
from agentops.people.selectors import team_is_working, team_rows
from agentops.people.services import team_save
from tests.agentops.operators.helpers import make_handoff

pytestmark = pytest.mark.usefixtures("db")

WEEKDAY_HOURS = {
    day: ["09:00", "17:00"] for day in ("mon", "tue", "wed", "thu", "fri")
}  # a weekday team


def logged_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def team_form(**changes) -> dict[str, object]:  # type: ignore[no-untyped-def]
    data: dict[str, object] = {"slug": "billing", "name": "Billing", "timezone": "Europe/Paris"}
    for day, (start, end) in WEEKDAY_HOURS.items():
        data[f"{day}_start"], data[f"{day}_end"] = start, end
    data.update(changes)
    return data


def test_it_creates_and_edits_a_team_with_members_and_hours(alice, bob, charlie):
    client = logged_in(alice)
    response = client.post(reverse("teams"), team_form(members=[bob.pk, charlie.pk]))
    assert response.status_code == 302
    team = Team.objects.get(slug="billing")
    assert team.timezone == "Europe/Paris" and team.working_hours == WEEKDAY_HOURS
    assert sorted(team.members.values_list("username", flat=True)) == ["bob", "charlie"]
    assert list(bob.teams.all()) == [team]

    edit = client.get(reverse("team_edit", args=["billing"])).content.decode()
    assert 'value="09:00"' in edit and 'value="Europe/Paris" selected' in edit
    changed = team_form(name="Billing EU", members=[bob.pk], sat_start="10:00", sat_end="14:00")
    assert client.post(reverse("team_edit", args=["billing"]), changed).status_code == 302
    team.refresh_from_db()
    assert team.name == "Billing EU" and team.working_hours["sat"] == ["10:00", "14:00"]
    assert list(team.members.all()) == [bob]
    created, edited = AuditEntry.objects.filter(target="billing").order_by("pk")
    assert created.action == "team.created" and created.actor == alice
    assert edited.action == "team.changed" and edited.detail == {
        "name": "Billing EU",
        "working_hours": {**WEEKDAY_HOURS, "sat": ["10:00", "14:00"]},
        "members": ["bob"],
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mon_start": "18:00"}, "The shift must end after it starts."),
        ({"mon_end": ""}, "Give both the start and the end, or neither."),
        ({"tue_start": "25:00"}, "Enter a valid time."),
        ({"timezone": "Mars/Olympus"}, "Select a valid choice."),
        ({"slug": "Billing Team"}, "Use lowercase letters, digits and dashes."),
    ],
)
def test_it_refuses_a_team_with_bad_hours_or_names(alice, changes, message):
    response = logged_in(alice).post(reverse("teams"), team_form(**changes))
    assert response.status_code == 400 and message in response.content.decode()
    assert not Team.objects.exists()


def test_it_refuses_a_second_team_with_the_same_slug(alice):
    Team.objects.create(slug="billing", name="Billing")
    response = logged_in(alice).post(reverse("teams"), team_form())
    assert (
        response.status_code == 400 and "Another team has this slug." in response.content.decode()
    )


def test_it_validates_hours_in_the_service_too(alice):
    for hours in ({"mon": ["17:00", "09:00"]}, {"funday": ["09:00", "10:00"]}, {"mon": "9-5"}):
        with pytest.raises(ValidationError):
            team_save(
                team=None,
                slug="night",
                name="Night",
                timezone_name="UTC",
                working_hours=hours,  # type: ignore[arg-type]
                members=[],
                actor=alice,
            )
    assert not Team.objects.exists()


def test_it_keeps_the_teams_page_to_admins(bob):
    assert logged_in(bob).get(reverse("teams")).status_code == 403
    assert logged_in(bob).post(reverse("teams"), team_form()).status_code == 403


def test_it_tells_working_hours_in_the_teams_time_zone():
    team = Team(slug="paris", name="Paris", timezone="Europe/Paris", working_hours=WEEKDAY_HOURS)
    monday = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday; Paris is UTC+1 in November
    assert not team_is_working(team=team, at=monday.replace(hour=7, minute=59))  # 08:59 there
    assert team_is_working(team=team, at=monday.replace(hour=8))  # 09:00 there
    assert team_is_working(team=team, at=monday.replace(hour=15, minute=59))
    assert not team_is_working(team=team, at=monday.replace(hour=16))  # 17:00 there: off
    saturday = datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert not team_is_working(team=team, at=saturday)


def test_it_shows_who_is_on_shift(alice, bob, charlie):
    day = Team.objects.create(slug="day", name="Day", working_hours=WEEKDAY_HOURS)
    day.members.add(bob, charlie)
    night = Team.objects.create(
        slug="night", name="Night", working_hours={"mon": ["00:00", "06:00"]}
    )
    night.members.add(bob)
    charlie.is_active = False
    charlie.save()
    monday_noon = datetime(2026, 11, 23, 12, tzinfo=UTC)
    rows = {r.team.slug: r for r in team_rows(now=monday_noon)}
    assert rows["day"].on_shift and not rows["night"].on_shift
    assert [m.username for m in rows["day"].members] == ["bob", "charlie"]  # active first

    page = logged_in(alice).get(reverse("teams")).content.decode()
    assert 'data-team="day"' in page and 'data-team="night"' in page
    assert "deactivated" in page  # charlie


def test_it_lists_handoffs_with_their_team_slug_in_the_api(alice, client):
    from agentops.auth import api_key_create

    team = Team.objects.create(slug="billing", name="Billing desk")
    make_handoff(team=team)
    make_handoff()
    _, key = api_key_create(user=alice, name="test")
    body = client.get("/api/handoffs", headers={"authorization": f"Bearer {key}"}).json()
    assert sorted(h["team"] for h in body["handoffs"]) == ["", "billing"]
    queue = logged_in(alice).get(reverse("operators:queue")).content.decode()
    assert "team Billing desk" in queue
