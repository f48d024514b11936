"""Runs, failures and metrics by agent version; the version on the run page; feedback on a
run and its messages from the run page."""

from __future__ import annotations

import pytest
from django.test import Client

from agentops.agents.services import agent_version_create
from agentops.models import Feedback, Message, Role, Run, RunStatus
from tests.factories import AgentFactory, SessionFactory

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def two_versions(alice):
    agent = AgentFactory(slug="support")
    v1 = agent_version_create(agent=agent, author=alice, publish=True)
    agent.system_prompt = "changed"
    agent.save()
    v2 = agent_version_create(agent=agent, author=alice, publish=True)
    session = SessionFactory(agent=agent)
    old = Run.objects.create(
        session=session,
        agent=agent,
        agent_version=v1,
        status=RunStatus.FAILED,
        error_class="tool_error",
        error_message="old failure",
    )
    new = Run.objects.create(
        session=session,
        agent=agent,
        agent_version=v2,
        status=RunStatus.FAILED,
        error_class="tool_error",
        error_message="new failure",
    )
    return agent, old, new


def test_it_filters_runs_by_version(charlie, two_versions):
    _, old, new = two_versions
    client = client_for(charlie)
    page = client.get("/runs/", {"agent": "support", "version": 2}).content.decode()
    assert str(new.pk)[:8] in page and str(old.pk)[:8] not in page
    assert 'href="/agents/support/versions/2/">v2</a>' in page
    both = client.get("/runs/", {"agent": "support"}).content.decode()
    assert str(new.pk)[:8] in both and str(old.pk)[:8] in both


def test_it_says_a_version_needs_an_agent(charlie, two_versions):
    page = client_for(charlie).get("/runs/", {"version": 2}).content.decode()
    assert "version numbers are per agent" in page


def test_it_filters_failures_by_version(charlie, two_versions):
    client = client_for(charlie)
    page = client.get("/failures/", {"agent": "support", "version": 1}).content.decode()
    assert "old failure" in page and "new failure" not in page


def test_it_shows_figures_per_version_on_the_metrics_page(charlie, two_versions):
    _, old, _ = two_versions
    Feedback.objects.create(run=old, author=charlie, rating="down", score=2)
    page = client_for(charlie).get("/insights/", {"agent": "support"}).content.decode()
    assert 'id="metrics-versions"' in page
    assert '<tr data-version="1"' in page and '<tr data-version="2"' in page
    assert "0% 👍 of 1" in page
    only = client_for(charlie).get("/insights/", {"agent": "support", "version": 2})
    assert '<tr data-version="2"' in only.content.decode()
    assert '<tr data-version="1"' not in only.content.decode()


def test_it_shows_the_version_on_the_run_page(charlie, two_versions):
    _, old, _ = two_versions
    page = client_for(charlie).get(f"/runs/{old.pk}/").content.decode()
    assert "data-run-version>v1</a>" in page


def _answer(run: Run) -> Message:
    return Message.objects.create(
        session=run.session, seq=1, role=Role.ASSISTANT, content="Here you go", run=run
    )


def test_it_takes_feedback_on_a_run_and_replaces_it_when_given_again(bob, two_versions):
    _, old, _ = two_versions
    client = client_for(bob)
    url = f"/runs/{old.pk}/feedback"
    assert client.post(url, {"rating": "down", "score": "2", "comment": "wrong"}).status_code == 302
    client.post(url, {"rating": "up", "score": "", "comment": "fine after all"})
    feedback = Feedback.objects.get()
    assert (feedback.run, feedback.message, feedback.author) == (old, None, bob)
    assert (feedback.rating, feedback.score, feedback.comment) == ("up", None, "fine after all")
    page = client.get(f"/runs/{old.pk}/").content.decode()
    assert "fine after all" in page


def test_it_takes_thumbs_on_a_message_from_htmx(bob, two_versions):
    _, old, _ = two_versions
    answer = _answer(old)
    client = client_for(bob)
    response = client.post(
        f"/runs/{old.pk}/feedback",
        {"rating": "up", "message": answer.pk},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200 and "data-thumbs-saved" in response.content.decode()
    feedback = Feedback.objects.get()
    assert (feedback.message, feedback.run) == (answer, old)


def test_it_refuses_bad_feedback_naming_the_field(bob, charlie, two_versions):
    _, old, new = two_versions
    other_message = _answer(new)
    client = client_for(bob)
    response = client.post(
        f"/runs/{old.pk}/feedback", {"rating": "meh"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "rating:" in response
    response = client.post(
        f"/runs/{old.pk}/feedback",
        {"rating": "up", "message": other_message.pk},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "message: Not a message of this run." in response
    response = client.post(f"/runs/{old.pk}/feedback", {"rating": "up", "score": "9"}, follow=True)
    assert "score:" in response.content.decode()
    assert client_for(charlie).post(f"/runs/{old.pk}/feedback", {"rating": "up"}).status_code == 403
    assert not Feedback.objects.exists()
