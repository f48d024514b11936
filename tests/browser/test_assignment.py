"""Automatic assignment and service levels in real browsers: three operators log in (online
from their login), ten end users ask the agent for a human one after another (real runs on the
worker), and each handoff lands in one operator's queue by round-robin or least busy, within
their caps; a first-response timer turns amber then red and the breach is counted once."""

from __future__ import annotations

from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone
from playwright.sync_api import expect
from rq.job import Job, JobStatus

from agentops.models import AssignmentMode, Handoff, HandoffStatus, Run, Team
from agentops.operators.assignment.services import handoff_claim, operator_cap_set
from agentops.operators.queue.services import handoffs_sweep
from agentops.runtime.services import session_create, session_post_message
from tests.agentops.operators.helpers import make_handoff
from tests.browser.conftest import login, screenshot
from tests.factories import UserFactory
from tests.kit import until
from tracing.platform.live import wait_sent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def three_online(browser, base_url, team):  # type: ignore[no-untyped-def]
    """Ann, Ben and Cat, members of `team`, each on their queue: online from their login."""
    people = [UserFactory(username=n, role="operator") for n in ("ann", "ben", "cat")]
    team.members.set(people)
    pages = {}
    for person in people:
        page = login(browser, base_url, person.username, "/operators/")
        expect(page.locator(".presence-switch")).to_have_attribute("data-presence", "online")
        expect(page.locator("[data-presence-banner]")).to_be_hidden()
        expect(page.locator("[data-live-status]")).to_contain_text("live")
        pages[person.username] = page
    return people, pages


def ten_ask_for_a_human(agent) -> list[str | None]:  # type: ignore[no-untyped-def]
    """Ten end users ask for a human, one after another; who got each handoff (None: it
    waits). Each run's job is over before the next starts: the worker assigns the handoff
    right after handing off, in the same job."""
    queue = django_rq.get_queue("runs")
    given = []
    for i in range(10):
        session = session_create(agent=agent, external_user=f"customer-{i}")
        run = session_post_message(session=session, content="I want a human please")
        assert run is not None
        job_id = until(lambda pk=run.pk: Run.objects.get(pk=pk).job_id)
        job = Job.fetch(job_id, connection=queue.connection)
        until(lambda j=job: j.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED))
        assert job.get_status() == JobStatus.FINISHED, f"run {i}: {job.get_status()}"
        handoff = Handoff.objects.select_related("claimed_by").get(session=session)
        given.append(handoff.claimed_by.username if handoff.claimed_by else None)
    return given


def expect_queues(pages, counts: dict[str, int], waiting: int) -> None:  # type: ignore[no-untyped-def]
    for name, page in pages.items():
        expect(page.locator("tr[data-claimed]")).to_have_count(counts[name])
        expect(page.locator("tr[data-claimed] [data-assigned]")).to_have_count(counts[name])
        expect(page.locator("li.handoff")).to_have_count(waiting)


def test_it_assigns_ten_handoffs_round_robin_within_caps(browser, base_url, chat_agent):
    team = Team.objects.create(
        slug="desk", name="Desk", assignment_mode=AssignmentMode.ROUND_ROBIN, concurrent_cap=5
    )
    chat_agent.handoff_team = team
    chat_agent.save()
    (ann, _ben, _cat), pages = three_online(browser, base_url, team)
    operator_cap_set(user=ann, cap=2, actor=None)

    given = ten_ask_for_a_human(chat_agent)

    assert given == ["ann", "ben", "cat", "ann", "ben", "cat", "ben", "cat", "ben", "cat"]
    expect_queues(pages, {"ann": 2, "ben": 4, "cat": 4}, waiting=0)
    screenshot(pages["ben"], "assignment-round-robin")

    # Cat goes away: she keeps hers, the next handoff skips her.
    pages["cat"].locator(".presence-switch select").select_option("away")
    expect(pages["cat"].locator(".presence-switch")).to_have_attribute("data-presence", "away")
    expect(pages["cat"].locator("[data-presence-banner]")).to_contain_text("You are away")
    session = session_create(agent=chat_agent, external_user="late")
    session_post_message(session=session, content="A human, please")
    expect(pages["ben"].locator("tr[data-claimed]")).to_have_count(5)
    expect(pages["cat"].locator("tr[data-claimed]")).to_have_count(4)


def test_it_assigns_ten_handoffs_to_the_least_busy_within_caps(browser, base_url, chat_agent):
    team = Team.objects.create(
        slug="desk", name="Desk", assignment_mode=AssignmentMode.LEAST_BUSY, concurrent_cap=4
    )
    chat_agent.handoff_team = team
    chat_agent.save()
    (ann, ben, cat), pages = three_online(browser, base_url, team)
    operator_cap_set(user=ben, cap=3, actor=None)
    elsewhere = Team.objects.create(slug="elsewhere", name="Elsewhere")
    for person, held in ((ann, 2), (cat, 1)):  # conversations they already hold, by hand
        for _ in range(held):
            handoff_claim(handoff_id=make_handoff(team=elsewhere).pk, user=person)
    wait_sent()
    for page in pages.values():
        page.reload()
        expect(page.locator("[data-live-status]")).to_contain_text("live")

    given = ten_ask_for_a_human(chat_agent)

    # Before: ann 2, ben 0, cat 1; ties go by the rotation; ben stops at his own cap of 3.
    assert given == ["ben", "cat", "ben", "cat", "ann", "ben", "cat", "ann", None, None]
    for name, total, assigned in (("ann", 4, 2), ("ben", 3, 3), ("cat", 4, 3)):
        page = pages[name]
        expect(page.locator("tr[data-claimed]")).to_have_count(total)
        expect(page.locator("tr[data-claimed] [data-assigned]")).to_have_count(assigned)
        expect(page.locator("li.handoff")).to_have_count(2)  # two wait: everyone is full
    screenshot(pages["ann"], "assignment-least-busy")
    assert Handoff.objects.filter(status=HandoffStatus.OPEN, team=team).count() == 2


def test_it_turns_a_first_response_timer_red_and_counts_the_breach_once(browser, base_url, alice):
    team = Team.objects.create(slug="desk", name="Desk", first_response_minutes=1)
    handoff = make_handoff(team=team, reason="Waiting for an answer")
    Handoff.objects.filter(pk=handoff.pk).update(created_at=timezone.now() - timedelta(seconds=50))
    page = login(browser, base_url, "alice", "/operators/")
    expect(page.locator("[data-live-status]")).to_contain_text("live")
    timer = page.locator(f'li[data-handoff="{handoff.pk}"] [data-sla]')
    expect(timer).to_have_attribute("data-sla-state", "amber")  # past 75% of the minute
    expect(timer).to_contain_text("first response")
    expect(page.locator('[data-sla-breaches="first_response"]')).to_have_text("0")

    expect(timer).to_have_attribute("data-sla-state", "red", timeout=30_000)
    expect(timer.locator("[data-sla-left]")).to_contain_text("overdue")
    screenshot(page, "sla-red")

    assert handoffs_sweep()["sla_breaches"] == 1  # the scheduler's sweep stores it
    wait_sent()
    expect(page.locator('[data-sla-breaches="first_response"]')).to_have_text("1")  # live
    expect(page.locator(f'li[data-handoff="{handoff.pk}"] [data-sla]')).to_have_attribute(
        "data-sla-breached", "1"
    )
    assert handoffs_sweep()["sla_breaches"] == 0
    page.reload()
    expect(page.locator('[data-sla-breaches="first_response"]')).to_have_text("1")
