"""Automatic assignment (round-robin, least busy, caps), presence, escalation and service
levels, on the real database; the scheduler's sweep is called as its job would."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agentops.models import (
    AssignmentMode,
    AuditEntry,
    Handoff,
    HandoffStatus,
    OperatorState,
    Presence,
    Team,
)
from agentops.operators.assignment.services import handoff_assign, handoff_claim, operator_cap_set
from agentops.operators.presence.services import operator_presence_set
from agentops.operators.queue.selectors import handoff_sla_timer, sla_breaches, sla_figures
from agentops.operators.queue.services import (
    handoff_snooze,
    handoffs_sla_check,
    handoffs_sweep,
    handoffs_wake_for_message,
)
from agentops.operators.work.services import handoff_close, handoff_reply, handoff_transfer
from agentops.selectors import operator_loads
from tests.agentops.operators.helpers import make_handoff
from tests.factories import UserFactory
from tracing.alerts import alerts_evaluate
from tracing.models import AlertMetric, AlertRule

pytestmark = pytest.mark.django_db(transaction=True)


def team_of_three(mode: str, *, cap: int = 3, **policy) -> tuple[Team, list]:  # type: ignore[no-untyped-def]
    team = Team.objects.create(
        slug=f"t-{mode}", name=mode, assignment_mode=mode, concurrent_cap=cap, **policy
    )
    people = [UserFactory(username=name, role="operator") for name in ("ann", "ben", "cat")]
    team.members.set(people)
    for person in people:
        operator_presence_set(user=person, presence=Presence.ONLINE)
    return team, people


def assign_ten(team: Team) -> list[str | None]:
    """Ten handoffs arrive one after another; each is assigned as it arrives."""
    given = []
    for _ in range(10):
        handoff = make_handoff(team=team)
        operator = handoff_assign(handoff_id=handoff.pk)
        given.append(operator.username if operator else None)
    return given


def loads(people) -> dict[str, int]:  # type: ignore[no-untyped-def]
    held = operator_loads(user_ids=[p.pk for p in people])
    return {p.username: held[p.pk] for p in people}


def test_it_assigns_round_robin_within_each_operators_cap():
    team, (ann, ben, cat) = team_of_three(AssignmentMode.ROUND_ROBIN, cap=3)
    operator_cap_set(user=ann, cap=2, actor=None)  # her own cap beats the team's

    given = assign_ten(team)

    assert given == ["ann", "ben", "cat", "ann", "ben", "cat", "ben", "cat", None, None]
    assert loads([ann, ben, cat]) == {"ann": 2, "ben": 3, "cat": 3}
    waiting = list(Handoff.objects.filter(status=HandoffStatus.OPEN).order_by("created_at"))
    assert len(waiting) == 2
    entry = AuditEntry.objects.filter(action="handoff.assign").first()
    assert entry.actor is None and entry.detail["team"] == team.slug
    assert entry.detail["mode"] == "round_robin"

    # Ann frees a slot: the longest waiting handoff is hers at once.
    first_of_anns = Handoff.objects.filter(claimed_by=ann).order_by("pk").first()
    handoff_close(handoff=first_of_anns, user=ann)
    assert Handoff.objects.get(pk=waiting[0].pk).claimed_by == ann
    assert Handoff.objects.filter(status=HandoffStatus.OPEN).count() == 1


def test_it_assigns_to_the_least_busy_within_each_operators_cap():
    team, (ann, ben, cat) = team_of_three(AssignmentMode.LEAST_BUSY, cap=4)
    operator_cap_set(user=ben, cap=3, actor=None)
    elsewhere = Team.objects.create(slug="elsewhere", name="Elsewhere")
    for person, held in ((ann, 2), (cat, 1)):  # conversations they already hold
        for _ in range(held):
            handoff_claim(handoff_id=make_handoff(team=elsewhere).pk, user=person)

    given = assign_ten(team)

    # Loads before: ann 2, ben 0, cat 1. Ties go by the rotation; ben stops at his cap of 3.
    assert given == ["ben", "cat", "ben", "cat", "ann", "ben", "cat", "ann", None, None]
    assert loads([ann, ben, cat]) == {"ann": 4, "ben": 3, "cat": 4}


def test_it_gives_nothing_to_operators_away_or_offline_and_everything_waiting_when_online():
    team, (ann, ben, cat) = team_of_three(AssignmentMode.ROUND_ROBIN)
    operator_presence_set(user=ben, presence=Presence.AWAY)
    operator_presence_set(user=cat, presence=Presence.OFFLINE)
    given = assign_ten(team)
    assert given == ["ann"] * 3 + [None] * 7  # ann's cap is the team's: 3

    operator_presence_set(user=ben, presence=Presence.ONLINE)  # takes three waiting at once
    assert loads([ann, ben, cat]) == {"ann": 3, "ben": 3, "cat": 0}
    assert OperatorState.objects.get(user=ben).presence == "online"
    with pytest.raises(ValueError, match="presence: choose one of online, away, offline"):
        operator_presence_set(user=ben, presence="busy")


def test_it_sets_the_presence_from_the_nav_and_offline_at_logout():
    _, (ann, _ben, _cat) = team_of_three(AssignmentMode.MANUAL)
    client = Client()
    client.force_login(ann)
    response = client.post(reverse("operators:presence"), {"presence": "away", "next": "/teams/"})
    assert response.status_code == 302 and response.url == "/teams/"
    offsite = client.post(
        reverse("operators:presence"), {"presence": "away", "next": "https://evil.example/"}
    )
    assert offsite.url == reverse("operators:queue")
    assert OperatorState.objects.get(user=ann).presence == "away"
    page = client.get(reverse("operators:queue")).content.decode()
    assert 'data-presence="away"' in page
    bad = client.post(reverse("operators:presence"), {"presence": "busy"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 400 and "presence: choose one of" in bad.content.decode()
    client.post(reverse("operators:presence"), {"presence": "online"})
    client.post(reverse("logout"))
    assert OperatorState.objects.get(user=ann).presence == "offline"


def test_it_leaves_a_manual_teams_handoffs_to_be_claimed():
    team, _ = team_of_three(AssignmentMode.MANUAL)
    assert assign_ten(team) == [None] * 10
    assert handoffs_sweep()["assigned"] == 0


def test_it_escalates_an_unclaimed_handoff_to_another_team_once_and_audits_it():
    night, _ = team_of_three(AssignmentMode.MANUAL)  # online, but they claim by hand
    backup = Team.objects.create(
        slug="backup", name="Backup", assignment_mode=AssignmentMode.ROUND_ROBIN
    )
    dora = UserFactory(username="dora", role="operator")
    backup.members.add(dora)
    operator_presence_set(user=dora, presence=Presence.ONLINE)
    Team.objects.filter(pk=night.pk).update(escalate_after_minutes=5, escalate_to=backup)
    late = make_handoff(team=night)
    fresh = make_handoff(team=night)
    Handoff.objects.filter(pk=late.pk).update(team_since=timezone.now() - timedelta(minutes=6))

    assert handoffs_sweep()["escalated"] == 1
    late.refresh_from_db()
    assert late.team == backup and late.escalated_at is not None
    assert late.claimed_by == dora  # the backup team assigns automatically
    assert Handoff.objects.get(pk=fresh.pk).team == night
    entry = AuditEntry.objects.get(action="handoff.escalated")
    assert entry.actor is None and entry.session == late.session
    assert entry.detail == {"from": "t-manual", "to": "backup", "after_minutes": 5}
    assert handoffs_sweep()["escalated"] == 0


def test_it_escalates_to_the_admins_when_the_team_names_no_other():
    team = Team.objects.create(slug="solo", name="Solo", escalate_after_minutes=1)
    handoff = make_handoff(team=team)
    Handoff.objects.filter(pk=handoff.pk).update(team_since=timezone.now() - timedelta(minutes=2))
    assert handoffs_sweep()["escalated"] == 1
    handoff.refresh_from_db()
    assert handoff.escalated_to_admins and handoff.team == team
    assert AuditEntry.objects.get(action="handoff.escalated").detail["to"] == "admins"
    assert handoffs_sweep()["escalated"] == 0  # once


def test_it_keeps_sweeping_past_a_team_policy_too_large_for_the_calendar():
    # Stored before the forms had bounds (or by hand): the sweep must not stop on it.
    team = Team.objects.create(
        slug="huge",
        name="Huge",
        escalate_after_minutes=2_000_000_000,
        first_response_minutes=2_000_000_000,
    )
    make_handoff(team=team)
    assert handoffs_sweep() == {"escalated": 0, "assigned": 0, "sla_breaches": 0}


def test_it_starts_the_escalation_clock_again_when_a_handoff_is_transferred_to_a_team():
    team = Team.objects.create(slug="solo", name="Solo", escalate_after_minutes=15)
    bob = UserFactory(username="bob", role="operator")
    handoff = make_handoff(team=team)
    Handoff.objects.filter(pk=handoff.pk).update(
        team_since=timezone.now() - timedelta(minutes=40), escalated_to_admins=True
    )
    handoff_claim(handoff_id=handoff.pk, user=bob)
    handoff_transfer(handoff=Handoff.objects.get(pk=handoff.pk), user=bob, to_team="solo")
    assert handoffs_sweep()["escalated"] == 0  # back in the queue just now
    handoff.refresh_from_db()
    assert not handoff.escalated_to_admins and handoff.status == HandoffStatus.OPEN
    Handoff.objects.filter(pk=handoff.pk).update(team_since=timezone.now() - timedelta(minutes=16))
    assert handoffs_sweep()["escalated"] == 1  # and it can escalate again, once due


def test_it_never_assigns_a_snoozed_handoff_and_assigns_it_once_woken():
    team, people = team_of_three(AssignmentMode.ROUND_ROBIN)
    snoozer = people[0]
    Team.objects.filter(pk=team.pk).update(assignment_mode=AssignmentMode.MANUAL)
    handoff = make_handoff(team=team)
    handoff_snooze(handoff=handoff, user=snoozer, until=None)  # until the user writes
    Team.objects.filter(pk=team.pk).update(assignment_mode=AssignmentMode.ROUND_ROBIN)
    assert handoff_assign(handoff_id=handoff.pk) is None
    assert handoffs_sweep()["assigned"] == 0
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.OPEN and handoff.claimed_by is None
    handoffs_wake_for_message(session_id=handoff.session_id)  # assigned as it commits
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.CLAIMED and handoff.snoozed_at is None
    assert handoff.claimed_by in people


def test_it_counts_a_service_level_breach_once_and_alerts_on_it():
    team = Team.objects.create(
        slug="desk", name="Desk", first_response_minutes=10, resolution_minutes=60
    )
    bob = UserFactory(username="bob", role="operator")
    late = make_handoff(team=team)
    on_time = make_handoff(team=team)
    eleven_ago = timezone.now() - timedelta(minutes=11)
    Handoff.objects.filter(pk__in=[late.pk, on_time.pk]).update(created_at=eleven_ago)
    handoff_claim(handoff_id=on_time.pk, user=bob)
    Handoff.objects.filter(pk=on_time.pk).update(
        first_response_at=eleven_ago + timedelta(minutes=9)
    )
    rule = AlertRule.objects.create(name="breaches", metric=AlertMetric.SLA_BREACHES, threshold=0)

    assert handoffs_sla_check() == 1
    assert handoffs_sla_check() == 0  # counted once
    late.refresh_from_db()
    assert late.first_response_breached_at == late.created_at + timedelta(minutes=10)
    timer = handoff_sla_timer(handoff=late)
    assert timer.kind == "first response" and timer.breached
    handoff_claim(handoff_id=late.pk, user=bob)
    handoff_reply(handoff=late, user=bob, content="Sorry for the wait.")
    assert handoffs_sweep()["sla_breaches"] == 0
    assert handoff_sla_timer(handoff=Handoff.objects.get(pk=late.pk)).kind == "resolution"
    figures = sla_figures(since=timezone.now() - timedelta(days=1))
    assert figures["first_response"] == 1 and figures["resolution"] == 0
    assert figures["teams"][0]["first_response"] == 1

    assert sla_breaches("") == 1.0
    (event,) = alerts_evaluate()
    assert event.rule == rule and event.state == "firing"
    handoff_close(handoff=Handoff.objects.get(pk=late.pk), user=bob)
    assert sla_breaches("") == 0.0
    assert [e.state for e in alerts_evaluate()] == ["resolved"]
    assert Handoff.objects.exclude(first_response_breached_at=None).count() == 1


def test_it_sets_a_teams_assignment_escalation_and_targets_on_the_team_page(alice):
    backup = Team.objects.create(slug="backup", name="Backup")
    ann = UserFactory(username="ann", role="operator")
    operator_presence_set(user=ann, presence=Presence.ONLINE)
    waiting = make_handoff(team=Team.objects.create(slug="desk", name="Desk"))
    client = Client()
    client.force_login(alice)
    form = {
        "slug": "desk",
        "name": "Desk",
        "timezone": "UTC",
        "members": [ann.pk],
        "assignment_mode": "least_busy",
        "concurrent_cap": "2",
        "escalate_after_minutes": "15",
        "escalate_to": backup.pk,
        "first_response_minutes": "5",
        "resolution_minutes": "120",
    }
    assert client.post(reverse("team_edit", args=["desk"]), form).status_code == 302
    team = Team.objects.get(slug="desk")
    assert (team.assignment_mode, team.concurrent_cap, team.escalate_to) == (
        "least_busy",
        2,
        backup,
    )
    assert (team.first_response_minutes, team.resolution_minutes) == (5, 120)
    entry = AuditEntry.objects.get(action="team.changed")
    assert (
        entry.detail["assignment_mode"] == "least_busy" and entry.detail["escalate_to"] == "backup"
    )
    assert Handoff.objects.get(pk=waiting.pk).claimed_by == ann  # now automatic: given at once

    page = client.get(reverse("teams")).content.decode()
    assert 'data-member="ann" data-presence="online"' in page and "1/2" in page
    assert "escalates after 15 min to Backup" in page

    for changes, message in (
        ({"escalate_to": team.pk}, "A team cannot escalate to itself"),
        ({"concurrent_cap": "0"}, "Ensure this value is greater than or equal to 1."),
        ({"first_response_minutes": "soon"}, "Enter a whole number."),
        ({"escalate_after_minutes": "2000000000"}, "less than or equal to 527040"),
        ({"concurrent_cap": "99999999999"}, "less than or equal to 10000"),
    ):
        response = client.post(reverse("team_edit", args=["desk"]), {**form, **changes})
        assert response.status_code == 400 and message in response.content.decode()


def test_it_sets_an_operators_own_cap_on_the_people_page(alice):
    ann = UserFactory(username="ann", role="operator")
    client = Client()
    client.force_login(alice)
    assert client.post(reverse("user_cap", args=[ann.pk]), {"cap": "5"}).status_code == 302
    assert OperatorState.objects.get(user=ann).concurrent_cap == 5
    assert AuditEntry.objects.get(action="operator.cap_set").detail == {"cap": 5, "previous": None}
    client.post(reverse("user_cap", args=[ann.pk]), {"cap": "0"})
    assert OperatorState.objects.get(user=ann).concurrent_cap == 5
    page = client.get(reverse("users"), follow=True).content.decode()
    assert "cap: give a whole number from 1 to 10000" in page
    for bad in ("²", "99999999999", "10001"):  # neither a 500 nor stored
        assert client.post(reverse("user_cap", args=[ann.pk]), {"cap": bad}).status_code == 302
        assert OperatorState.objects.get(user=ann).concurrent_cap == 5
    client.post(reverse("user_cap", args=[ann.pk]), {"cap": ""})
    assert OperatorState.objects.get(user=ann).concurrent_cap is None


def test_it_shows_an_operator_their_teams_queue_with_timers_and_breach_figures(alice):
    desk = Team.objects.create(slug="desk", name="Desk", first_response_minutes=10)
    other = Team.objects.create(slug="other", name="Other")
    ann = UserFactory(username="ann", role="operator")
    desk.members.add(ann)
    mine = make_handoff(team=desk, reason="Desk handoff")
    make_handoff(team=other, reason="Other team's handoff")
    make_handoff(reason="Nobody's handoff")
    Handoff.objects.filter(pk=mine.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    handoffs_sla_check()
    client = Client()
    client.force_login(ann)
    page = client.get(reverse("operators:queue")).content.decode()
    assert "Desk handoff" in page and "Nobody&#x27;s handoff" in page
    assert "Other team" not in page
    assert 'data-sla-kind="first response"' in page and 'data-sla-breached="1"' in page
    assert 'data-sla-breaches="first_response">1<' in page
    client.force_login(alice)
    assert "Other team" in client.get(reverse("operators:queue")).content.decode()


def test_it_fills_the_slot_a_transfer_frees_and_assigns_what_a_team_is_sent():
    team, _people = team_of_three(AssignmentMode.ROUND_ROBIN, cap=1)
    held = [make_handoff(team=team) for _ in range(3)]
    for handoff in held:
        handoff_assign(handoff_id=handoff.pk)
    waiting = make_handoff(team=team)
    assert handoff_assign(handoff_id=waiting.pk) is None  # everyone is at their cap

    other = Team.objects.create(slug="t-other", name="other", assignment_mode="round_robin")
    dan = UserFactory(username="dan", role="operator")
    other.members.set([dan])
    operator_presence_set(user=dan, presence=Presence.ONLINE)
    first = Handoff.objects.get(pk=held[0].pk)
    holder = first.claimed_by
    handoff_transfer(handoff=first, user=holder, to_team="t-other", note="billing question")

    first.refresh_from_db()
    waiting.refresh_from_db()
    assert first.claimed_by == dan  # the team it was sent to assigns it
    assert waiting.claimed_by == holder  # the freed slot is filled at once
