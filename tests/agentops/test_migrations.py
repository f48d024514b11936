"""Data migrations of the core app, run for real on Postgres (backwards, then forwards)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from agentops.models import Agent, Handoff, Team

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_TEAMS = ("agentops", "0007_teams_and_invitations")


def migrate(targets):  # type: ignore[no-untyped-def]
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return executor.loader.project_state(targets).apps if targets else None


def test_it_turns_free_text_teams_into_teams():
    try:
        old = migrate([BEFORE_TEAMS])
        endpoint = old.get_model("agentops", "ModelEndpoint").objects.create(
            name="e", base_url="http://127.0.0.1:9/v1", default_model="m"
        )
        OldAgent = old.get_model("agentops", "Agent")
        for slug, team in [
            ("a1", "Billing"),
            ("a2", "billing "),
            ("a3", ""),
            ("a4", "Night shift"),
        ]:
            OldAgent.objects.create(slug=slug, name=slug, endpoint=endpoint, handoff_team=team)
        session = old.get_model("agentops", "Session").objects.create(
            agent=OldAgent.objects.get(slug="a1")
        )
        OldHandoff = old.get_model("agentops", "Handoff")
        for team in ("Night shift", "escalations", ""):
            OldHandoff.objects.create(session=session, reason=f"to {team}", team=team)
    finally:
        migrate(None)

    assert dict(Team.objects.values_list("slug", "name")) == {
        "billing": "Billing",  # "Billing" and "billing " are one team
        "escalations": "escalations",
        "night-shift": "Night shift",
    }
    teams = dict(Agent.objects.values_list("slug", "handoff_team__slug"))
    assert teams == {"a1": "billing", "a2": "billing", "a3": None, "a4": "night-shift"}
    handoffs = dict(Handoff.objects.values_list("reason", "team__slug"))
    assert handoffs == {
        "to Night shift": "night-shift",
        "to escalations": "escalations",
        "to ": None,
    }


def test_it_marks_the_draft_chats_and_forks_made_before_the_sandbox_rule():
    from agentops.models import Session

    try:
        old = migrate([("agentops", "0025_handed_off_label")])
        endpoint = old.get_model("agentops", "ModelEndpoint").objects.create(
            name="e", base_url="http://127.0.0.1:9/v1", default_model="m"
        )
        agent = old.get_model("agentops", "Agent").objects.create(
            slug="shop", name="Shop", endpoint=endpoint
        )
        version = old.get_model("agentops", "AgentVersion").objects.create(
            agent=agent, number=1, config={}
        )
        OldSession = old.get_model("agentops", "Session")
        real = OldSession.objects.create(agent=agent, external_user="erin", title="Order")
        OldSession.objects.create(
            agent=agent,
            external_user="draft:alice",
            title="Draft chat · Shop",
            agent_version=version,
        )
        OldSession.objects.create(agent=agent, external_user="erin", forked_from=real)
    finally:
        migrate(None)
    assert set(Session.objects.production().values_list("title", flat=True)) == {"Order"}
    assert Session.objects.sandbox().count() == 2
