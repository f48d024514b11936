"""The builder's services and selectors: create/update as versions, validation by field,
feedback replaced on re-scoring, diffs with names, per-version figures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agentops.agents.selectors import version_diff, version_figures
from agentops.agents.services import (
    agent_create,
    agent_update,
    agent_version_create,
    agent_version_derive,
)
from agentops.feedback.services import feedback_give
from agentops.models import Agent, AgentVersion, Feedback, Message, Role, Run, Team
from tests.factories import AgentFactory, EndpointFactory, SessionFactory, ToolFactory

pytestmark = pytest.mark.django_db


def test_it_refuses_a_temperature_out_of_range_naming_it(alice):
    v1 = agent_version_create(agent=AgentFactory(), author=alice)
    with pytest.raises(ValidationError) as caught:
        agent_version_derive(version=v1, changes={"temperature": 5.0}, author=alice)
    assert "temperature" in caught.value.message_dict


def test_it_creates_an_agent_with_defaults_for_what_is_left_out(alice):
    endpoint = EndpointFactory()
    version = agent_create(
        slug="helper", config={"name": "Helper", "endpoint": endpoint.pk}, author=alice
    )
    agent = Agent.objects.get(slug="helper")
    assert version.agent_id == agent.pk and version.number == 1
    assert (agent.max_steps, agent.memory_enabled, agent.endpoint) == (12, True, endpoint)


def test_it_names_every_bad_field_when_creating_and_stores_nothing(alice):
    with pytest.raises(ValidationError) as caught:
        agent_create(
            slug="Bad Slug",
            config={"name": "", "endpoint": 999999, "colour": "red"},
            max_concurrent_runs=-1,
            author=alice,
        )
    assert {"slug", "name", "endpoint", "colour", "max_concurrent_runs"} <= set(
        caught.value.message_dict
    )
    assert not Agent.objects.exists() and not AgentVersion.objects.exists()


def test_it_updates_the_row_and_saves_a_version_or_nothing(alice):
    agent = AgentFactory(max_steps=5)
    agent_version_create(agent=agent, author=alice)
    with pytest.raises(ValidationError):
        agent_update(agent=agent, changes={"max_steps": 0, "name": "X"}, author=alice)
    agent.refresh_from_db()
    assert (agent.max_steps, agent.versions.count()) == (5, 1) and agent.name != "X"
    version = agent_update(
        agent=agent, changes={"max_steps": 7}, max_concurrent_runs=2, author=alice, note="more"
    )
    agent.refresh_from_db()
    assert (version.number, version.note, version.config["max_steps"]) == (2, "more", 7)
    assert agent.max_concurrent_runs == 2 and agent.published_version is None


def test_it_diffs_with_names_not_ids(alice):
    main, backup = EndpointFactory(name="main"), EndpointFactory(name="backup")
    team = Team.objects.create(slug="billing", name="Billing")
    tool = ToolFactory(name="lookup")
    agent = AgentFactory(endpoint=main)
    agent_version_create(agent=agent, author=alice)
    version = agent_update(
        agent=agent,
        changes={
            "handoff_team": team.pk,
            "tools": [tool.pk],
            "fallbacks": [{"endpoint": backup.pk, "model": ""}],
        },
        author=alice,
    )
    changes = {c.name: (c.before, c.after) for c in version_diff(version=version)}
    assert changes == {
        "fallbacks": ("", "backup:default model"),
        "tools": ("", "lookup"),
        "handoff_team": ("none", "billing"),
    }


def test_it_keeps_one_feedback_per_person_and_target(bob, charlie):
    agent = AgentFactory()
    session = SessionFactory(agent=agent)
    run = Run.objects.create(session=session, agent=agent, status="succeeded")
    answer = Message.objects.create(session=session, seq=1, role=Role.ASSISTANT, run=run)
    feedback_give(author=bob, run=run, rating="down", score=2)
    feedback_give(author=bob, run=run, rating="up")
    feedback_give(author=charlie, run=run, rating="down")
    feedback_give(author=bob, message=answer, rating="up", comment="good")
    assert Feedback.objects.count() == 3
    mine = Feedback.objects.get(author=bob, message=None)
    assert (mine.rating, mine.score) == ("up", None)
    assert Feedback.objects.get(message=answer).run == run
    for kwargs, field in [
        ({"run": run, "rating": "maybe"}, "rating"),
        ({"run": run, "rating": "up", "score": 0}, "score"),
        ({"run": run, "message": answer, "rating": "up"}, "target"),
        ({"rating": "up"}, "target"),
    ]:
        with pytest.raises(ValidationError) as caught:
            feedback_give(author=bob, **kwargs)
        assert field in caught.value.message_dict


def test_it_figures_each_version_from_its_runs(alice, bob):
    agent = AgentFactory()
    v1 = agent_version_create(agent=agent, author=alice, publish=True)
    session = SessionFactory(agent=agent)
    start = timezone.now() - timedelta(minutes=5)
    for seconds, status in [(1, "succeeded"), (3, "succeeded"), (5, "handed_off")]:
        run = Run.objects.create(
            session=session,
            agent=agent,
            agent_version=v1,
            status=status,
            started_at=start,
            finished_at=start + timedelta(seconds=seconds),
            tokens_in=100,
            tokens_out=10,
        )
    feedback_give(author=bob, run=run, rating="down", score=1)
    (figures,) = version_figures(agent=agent)
    outcomes = figures.outcomes
    assert (figures.version, figures.runs, outcomes.succeeded, outcomes.handed_off) == (v1, 3, 2, 1)
    assert figures.p50_ms == pytest.approx(3000)
    assert figures.tokens == 330 and figures.feedback == 1 and figures.thumbs_up_rate == 0
    assert figures.mean_score == 1


def test_it_lists_versions_with_diffs_in_a_fixed_number_of_queries(charlie, alice):
    agent = AgentFactory(slug="support")
    agent_version_create(agent=agent, author=alice)
    client = Client()
    client.force_login(charlie)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/agents/support/versions/").status_code == 200
        return len(queries)

    few = count()
    for n in range(5):
        agent_update(agent=agent, changes={"system_prompt": f"prompt {n}"}, author=alice)
    assert count() == few
