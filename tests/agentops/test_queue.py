"""Queue depth and time in queue: the selector and the home page."""

from __future__ import annotations

import math
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from agentops.models import Run, RunStatus
from agentops.selectors import run_queue_summary
from tests.factories import AgentFactory, SessionFactory
from tracing.alerts import alerts_evaluate
from tracing.models import AlertMetric, AlertRule, AlertState
from tracing.templatetags.tracing_tags import ms


def make_run(agent, status, **fields) -> Run:
    session = SessionFactory(agent=agent)
    return Run.objects.create(session=session, agent=agent, status=status, **fields)


def queue_of_two_agents(now):
    """alpha: queued 5 min 30 s and 40 s ago, one running; beta: one queued 80 s ago, job not sent."""
    alpha, beta, idle = (AgentFactory(slug=s) for s in ("q-alpha", "q-beta", "q-idle"))
    make_run(alpha, RunStatus.QUEUED, enqueued_at=now - timedelta(minutes=5, seconds=30))
    make_run(alpha, RunStatus.QUEUED, enqueued_at=now - timedelta(seconds=40))
    make_run(alpha, RunStatus.RUNNING, enqueued_at=now - timedelta(hours=2))
    make_run(alpha, RunStatus.SUCCEEDED, enqueued_at=now - timedelta(hours=3))
    late = make_run(beta, RunStatus.QUEUED)
    Run.objects.filter(pk=late.pk).update(created_at=now - timedelta(seconds=80))
    make_run(idle, RunStatus.WAITING, enqueued_at=now - timedelta(hours=1))


def test_it_counts_queued_and_running_runs_per_agent(db):
    now = timezone.now()
    queue_of_two_agents(now)
    summary = run_queue_summary(now=now)
    assert (summary.queued, summary.running) == (3, 1)
    assert summary.oldest_wait == timedelta(minutes=5, seconds=30)
    rows = {a.agent: a for a in summary.agents}
    assert (rows["q-alpha"].queued, rows["q-alpha"].running) == (2, 1)
    assert rows["q-alpha"].oldest_wait == timedelta(minutes=5, seconds=30)
    # Not yet enqueued: waiting since it was created.
    assert (rows["q-beta"].queued, rows["q-beta"].oldest_wait) == (1, timedelta(seconds=80))
    assert (rows["q-idle"].queued, rows["q-idle"].running, rows["q-idle"].oldest_wait) == (
        0,
        0,
        None,
    )
    assert [a.agent for a in summary.busy_agents] == ["q-alpha", "q-beta"]


def test_it_shows_the_queue_on_the_home_page(client, charlie):
    created = timezone.now()
    queue_of_two_agents(created)
    client.force_login(charlie)
    before = timezone.now()
    html = client.get(reverse("home")).content.decode()
    after = timezone.now()

    def shown(age: timedelta) -> set[str]:
        low = math.floor((before - created + age).total_seconds())
        high = math.ceil((after - created + age).total_seconds())
        return {f">{ms(s * 1000)}<" for s in range(low, high + 1)}

    assert "<strong data-queued>3</strong>" in html
    assert "<strong data-running>1</strong>" in html
    oldest = shown(timedelta(minutes=5, seconds=30))
    assert any(f"data-oldest-wait{text}" in html for text in oldest), html
    alpha = html.split('<tr data-agent="q-alpha">')[1].split("</tr>")[0]
    assert "<td>2</td>" in alpha and "<td>1</td>" in alpha
    assert any(text in alpha for text in oldest), alpha
    beta = html.split('<tr data-agent="q-beta">')[1].split("</tr>")[0]
    assert any(text in beta for text in shown(timedelta(seconds=80))), beta
    assert 'data-agent="q-idle"' not in html


def test_it_shows_an_empty_queue_on_the_home_page(client, charlie):
    client.force_login(charlie)
    html = client.get(reverse("home")).content.decode()
    assert "<strong data-queued>0</strong>" in html
    assert "<strong data-oldest-wait>\u2013</strong>" in html


def test_it_fires_alert_rules_on_queue_depth_and_wait(db):
    now = timezone.now()
    queue_of_two_agents(now)
    for name, metric, agent, threshold in [
        ("deep", AlertMetric.QUEUE_DEPTH, "", 2),
        ("beta deep", AlertMetric.QUEUE_DEPTH, "q-beta", 1),
        ("slow", AlertMetric.QUEUE_WAIT, "", 300),
        ("beta slow", AlertMetric.QUEUE_WAIT, "q-beta", 120),
    ]:
        AlertRule.objects.create(name=name, metric=metric, agent=agent, threshold=threshold)
    fired = alerts_evaluate()
    assert {e.rule.name for e in fired} == {"deep", "slow"}
    assert {e.state for e in fired} == {AlertState.FIRING}
    (slow,) = [e for e in fired if e.rule.name == "slow"]
    assert 330 <= slow.value < 340 and "(threshold 300, now)" in slow.message
    Run.objects.filter(status=RunStatus.QUEUED).update(status=RunStatus.RUNNING)
    resolved = alerts_evaluate()
    assert {(e.rule.name, e.state, e.value) for e in resolved} == {
        ("deep", AlertState.RESOLVED, 0),
        ("slow", AlertState.RESOLVED, 0),
    }
