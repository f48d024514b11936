"""A handoff goes to a real team: the agent's, or one the model names that exists; the API
and the trace carry the team's slug."""

import pytest

from agentops.auth import api_key_create
from agentops.models import Handoff, RunStatus, Team
from agentops.runtime.services import session_create, session_post_message
from tests.agentops.runtime.helpers import spans, wait_for_run
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def billing(dev_agent) -> Team:
    team = Team.objects.create(slug="billing", name="Billing desk")
    dev_agent.handoff_team = team
    dev_agent.save()
    dev_agent.tools.add(*python_tools_sync())
    return team


def hand_off(agent, text: str) -> Handoff:  # type: ignore[no-untyped-def]
    session = session_create(agent=agent, external_user="erin")
    run = wait_for_run(session_post_message(session=session, content=text).pk)
    assert run.status == RunStatus.HANDED_OFF, run.error_message
    return Handoff.objects.select_related("team").get(run=run)


def test_it_hands_off_to_the_agents_team(worker, dev_agent, billing, alice, client):
    handoff = hand_off(dev_agent, "a human please")
    assert handoff.team == billing
    (span,) = spans(handoff.run_id, "handoff")
    assert span.attributes["team"] == "billing"
    _, key = api_key_create(user=alice, name="test")
    listed = client.get("/api/handoffs", headers={"authorization": f"Bearer {key}"}).json()
    assert [h["team"] for h in listed["handoffs"]] == ["billing"]


def test_it_hands_off_to_a_team_the_model_names_if_it_exists(worker, dev_agent, billing):
    Team.objects.create(slug="sales", name="Sales")
    named = hand_off(dev_agent, 'call handoff_to_human {"reason": "pricing", "team": "sales"}')
    assert named.team is not None and named.team.slug == "sales"
    unknown = hand_off(dev_agent, 'call handoff_to_human {"reason": "?", "team": "nobody"}')
    assert unknown.team == billing
