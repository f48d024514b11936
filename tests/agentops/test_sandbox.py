"""The one sandbox rule (models.SessionQuerySet): experiments', draft chats' and forks'
sessions stay out of every production list, figure, metric, assignment and takeover, and
write memories of their own."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agentops.agents.selectors import version_figures
from agentops.agents.services import agent_version_create
from agentops.console.selectors import sessions_search
from agentops.models import Message, Role, Run, RunStatus, Session
from agentops.observe.selectors import failures_grouped, run_forks
from agentops.openai_compat.services import chat_session_resolve
from agentops.operators.access import HandoffConflict
from agentops.operators.queue.selectors import handoff_figures
from agentops.operators.takeover.selectors import conversations_live
from agentops.operators.takeover.services import session_take_over
from agentops.operators.work.selectors import user_conversations
from agentops.playground.services import playground_run
from agentops.runtime.checkpoint import messages_append
from agentops.runtime.drafts import draft_session_start
from agentops.runtime.services import (
    RuntimeConflict,
    handoff_open,
    run_fork,
    session_create,
)
from tests.factories import AgentFactory
from tracing.emit import Tracer
from tracing.models import MetricRollup
from tracing.rollups import rollup_metrics
from tracing.selectors import metrics_overview

ASKED_TWICE = ["where is my order?", "Where is my order"]


def _conversation(session: Session, status: str = RunStatus.RUNNING) -> Run:
    """Two equal questions (the live view's "user asked twice") and a run of the last one."""
    messages_append(
        session_id=session.pk,
        messages=[Message(role=Role.USER, content=text) for text in ASKED_TWICE],
    )
    return Run.objects.create(
        session=session,
        agent=session.agent,
        agent_version=session.agent_version,
        status=status,
        error_class="timeout" if status == RunStatus.FAILED else "",
        finished_at=None if status == RunStatus.RUNNING else timezone.now(),
        trigger=Message.objects.filter(session=session).order_by("-seq").first(),
    )


@pytest.fixture
def world(db, alice):
    """A real conversation and three sandbox ones of the same agent: the admin's draft chat,
    an experiment's session and a fork of the real conversation (same end user)."""
    agent = AgentFactory(slug="shop")
    agent_version_create(agent=agent, author=alice, publish=True)
    real = session_create(agent=agent, external_user="erin")
    origin = _conversation(real, RunStatus.FAILED)
    draft = draft_session_start(agent=agent, author=alice)
    experiment = Session.objects.create(
        agent=agent, external_user="experiment-1", sandbox=True, title="exp · item 1"
    )
    fork_run = run_fork(run=origin, step=0, actor=alice)
    fork = fork_run.session
    for session in (draft, experiment):
        _conversation(session, RunStatus.FAILED)
    _conversation(Session.objects.get(pk=draft.pk), RunStatus.RUNNING)  # still going
    Run.objects.filter(pk=fork_run.pk).update(status=RunStatus.HANDED_OFF)
    return {"agent": agent, "real": real, "sandboxes": [draft, experiment, fork], "fork": fork}


def test_draft_chats_and_forks_are_sandbox_sessions(world):
    draft, experiment, fork = world["sandboxes"]
    assert draft.sandbox and fork.sandbox and not world["real"].sandbox
    assert set(Session.objects.sandbox()) == {draft, experiment, fork}
    assert list(Session.objects.production()) == [world["real"]]


def test_every_production_list_and_figure_leaves_sandbox_sessions_out(world, client, alice):
    from agentops.selectors import run_outcomes

    real, sandboxes, agent = world["real"], world["sandboxes"], world["agent"]
    hidden = [str(s.pk) for s in sandboxes]
    # Console
    assert sessions_search() == [real]
    client.force_login(alice)
    console = client.get(reverse("console:index")).content.decode()
    assert str(real.pk) in console and not any(pk in console for pk in hidden)
    # Live conversations: no false "user asked twice", no watch page
    live = conversations_live(now=timezone.now())
    assert [c.session for c in live] == [real] and "user asked twice" in live[0].signals
    page = client.get(reverse("operators:live")).content.decode()
    assert str(real.pk) in page and not any(pk in page for pk in hidden)
    for session in sandboxes:
        assert client.get(reverse("operators:watch", args=[session.pk])).status_code == 404
    # Runs, failures, home, figures
    listed = client.get(reverse("observe:runs")).context["page"].object_list
    assert {r.session_id for r in listed} == {real.pk}
    sandbox_listed = client.get(reverse("observe:runs"), {"source": "experiments"})
    assert {r.session_id for r in sandbox_listed.context["page"].object_list} == {
        s.pk for s in sandboxes
    }
    failures = failures_grouped(since=None)
    assert [r.session_id for g in failures for r in g.runs] == [real.pk]
    home = client.get("/").content.decode()
    assert not any(str(r.pk)[:8] in home for r in Run.objects.sandbox())
    assert run_outcomes(agent="shop")[None].finished == 1
    assert [f.outcomes.failed for f in version_figures(agent=agent) if f.runs] == [1]
    rates = handoff_figures(since=timezone.now() - timedelta(days=1))["rates"]
    assert rates == [{"agent": "shop", "runs": 1, "handoffs": 0, "rate": 0.0}]
    # The end user's other conversations, the widget's and /v1/'s "current" one: not a fork
    other = session_create(agent=agent, external_user="erin")
    assert user_conversations(session=other) == [real]
    resolved, created = chat_session_resolve(
        agent=agent, user=alice, session_id="", end_user="erin"
    )
    assert resolved.pk in {real.pk, other.pk} and not created
    from agentops.widget.selectors import enduser_session_current, enduser_session_get

    class EndUser:
        external_user = "erin"

    current = enduser_session_current(agent_id=agent.pk, enduser=EndUser())  # type: ignore[arg-type]
    assert current is not None and not current.sandbox
    fork = world["fork"]
    assert enduser_session_get(agent_id=agent.pk, enduser=EndUser(), session_id=fork.pk) is None  # type: ignore[arg-type]
    # The run page still lists the fork made from the run
    origin = Run.objects.get(session=real)
    assert [r.session_id for r in run_forks(run=origin)] == [fork.pk]


def test_a_sandbox_session_is_never_taken_over_nor_handed_to_the_queue(world, bob, client):
    for session in world["sandboxes"]:
        with pytest.raises(HandoffConflict, match="sandbox"):
            session_take_over(session_id=session.pk, user=bob)
        with pytest.raises(RuntimeConflict, match="sandbox"):
            handoff_open(session_id=session.pk, agent_slug="shop", run_id=None, reason="test")
        client.force_login(bob)
        response = client.post(reverse("operators:take_over", args=[session.pk]))
        assert response.status_code == 404
    assert not Run.objects.sandbox().exclude(takeover_by=None).exists()
    for run in Run.objects.all():  # the run page offers no Take over of a sandbox session
        page = client.get(reverse("observe:run", args=[run.pk])).content.decode()
        assert ("data-take-over" in page) == (run.session_id == world["real"].pk), run.session
    assert session_take_over(session_id=world["real"].pk, user=bob).handoff is not None


def test_sandbox_sessions_have_memory_scopes_of_their_own(world):
    scopes = [s.memory_scope for s in world["sandboxes"]]
    assert world["real"].memory_scope == "erin"
    assert len(set(scopes)) == 3 and all(s.startswith("sandbox:") for s in scopes)
    two_variants = [
        Session.objects.create(agent=world["agent"], external_user="experiment-1", sandbox=True)
        for _ in range(2)
    ]
    assert two_variants[0].memory_scope != two_variants[1].memory_scope


def test_sandbox_traces_stay_out_of_metrics(db):
    """A sandbox run's spans and a playground call count in no metric (no "(none)" agent)."""
    start = timezone.now()
    for sandbox in (True, False):
        tracer = Tracer(uuid.uuid4(), agent="shop", sandbox=sandbox)
        tracer.event("run.status", status="running")
        with tracer.span("model.call", **{"gen_ai.request.model": "m"}):
            pass
        tracer.event("run.status", status="succeeded")
        tracer.flush_now()
    rollup_metrics(settle_seconds=0)
    overview = metrics_overview(since=start - timedelta(minutes=1), until=timezone.now())
    assert [(e["agent"], e["run"].count, e["model"].count) for e in overview.by_agent] == [
        ("shop", 1, 1)
    ]


@pytest.mark.django_db(transaction=True)
def test_a_playground_call_is_no_agent_in_the_metrics(dev_agent, devmodel, alice, client):
    playground_run(
        source_trace_id=uuid.uuid4(),
        source_span_id="0" * 16,
        endpoint=dev_agent.endpoint,
        model=dev_agent.model_name,
        temperature=None,
        messages=[{"role": "user", "content": "hi"}],
        tools=[],
        actor=alice,
    )
    rollup_metrics(settle_seconds=0)
    assert not MetricRollup.objects.filter(agent="").exists()
    client.force_login(alice)
    assert "(none)" not in client.get(reverse("observe:metrics")).content.decode()


def test_every_page_shows_the_same_outcome_rates_for_the_same_filter(db, alice, bob, client):
    """One agent, one version, the last 30 days: the builder's figures, the metrics page (its
    figures, its per-agent row, its per-version table) and the queue's figures read one
    number each. The runs are chosen so that the old definitions disagreed: a running run, a
    cancelled one, a takeover of an idle conversation (a handoff without a run) and a draft
    chat's handoff."""
    from agentops.selectors import run_outcomes

    agent = AgentFactory(slug="shop")
    version = agent_version_create(agent=agent, author=alice, publish=True)
    statuses = [RunStatus.SUCCEEDED] * 3 + [RunStatus.HANDED_OFF] * 2
    statuses += [RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.RUNNING]
    for status in statuses:
        session = session_create(agent=agent, external_user="erin")
        Run.objects.create(session=session, agent=agent, agent_version=version, status=status)
    idle = session_create(agent=agent, external_user="finn")
    session_take_over(session_id=idle.pk, user=bob)  # a handoff, but no run handed off
    draft = draft_session_start(agent=agent, author=alice)
    Run.objects.create(session=draft, agent=agent, agent_version=version, status="handed_off")
    outcomes = run_outcomes(agent="shop", since=timezone.now() - timedelta(days=30))[None]
    assert (outcomes.finished, outcomes.handoff_rate, outcomes.success_rate) == (7, 2 / 7, 3 / 7)

    client.force_login(alice)
    pages = {
        "builder": client.get(reverse("agents:detail", args=["shop"])),
        "metrics": client.get(reverse("observe:metrics"), {"window": "30d", "agent": "shop"}),
        "queue": client.get(reverse("operators:queue"), {"window": "30d"}),
    }
    shown: dict[str, set[str]] = {"handoff": set(), "success": set()}
    for name, response in pages.items():
        assert response.status_code == 200, name
        html = response.content.decode()
        handoff = re.findall(r"data-handoff-rate>([^<]*)<", html)
        assert handoff, f"{name} shows no handoff rate"
        shown["handoff"] |= {f"{name}: {value}" for value in handoff}
        success = re.findall(r"data-success-rate>([^<]*)<", html)
        shown["success"] |= {f"{name}: {value}" for value in success}
    assert {v.split(": ")[1] for v in shown["handoff"]} == {"28.6%"}, shown["handoff"]
    assert {v.split(": ")[1] for v in shown["success"]} == {"42.9%"}, shown["success"]
    metrics_html = pages["metrics"].content.decode()
    assert metrics_html.count("data-handoff-rate>") == 3  # the KPI, the agent, the version
