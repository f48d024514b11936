"""Per-run limits and budgets through the API: field errors beside the field, the schema."""

from __future__ import annotations

import pytest
from django.test import Client

from agentops.agents.services import agent_version_create
from agentops.auth import api_key_create
from agentops.models import AgentVersion
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


def auth(user) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {api_key_create(user=user, name='t')[1]}"}


def send(client: Client, path: str, body: dict, user, method: str = "post"):
    return getattr(client, method)(path, body, content_type="application/json", **auth(user))


def test_it_sets_per_run_limits_in_a_new_version_and_names_a_bad_one(client, alice):
    agent = AgentFactory(slug="support")
    agent_version_create(agent=agent, author=alice, publish=True)
    limits = {
        "run_max_cost": 0.25,
        "run_max_tokens": 5000,
        "run_max_tool_calls": 8,
        "run_max_seconds": 120,
    }
    response = send(client, "/api/agents/support", limits, alice, "patch")
    assert response.status_code == 200, response.content
    config = response.json()["config"]
    assert {name: config[name] for name in limits} == limits
    for bad, field in [
        ({"run_max_cost": -1}, "run_max_cost"),
        ({"run_max_tokens": 0}, "run_max_tokens"),
        ({"run_max_tool_calls": "many"}, "run_max_tool_calls"),
        ({"run_max_seconds": 0.5}, "run_max_seconds"),
    ]:
        refused = send(client, "/api/agents/support", bad, alice, "patch")
        assert refused.status_code == 422, (bad, refused.content)
        assert refused.json()["field"].split(".")[0] == field, refused.json()
    assert AgentVersion.objects.filter(agent=agent).count() == 2
    cleared = send(client, "/api/agents/support", {"run_max_cost": None}, alice, "patch")
    assert cleared.json()["config"]["run_max_cost"] is None


def test_the_schema_lists_the_per_run_limits(client):
    schema = client.get("/api/openapi.json").json()["components"]["schemas"]
    fields = schema["SettingsIn"]["properties"]
    assert {"run_max_cost", "run_max_tokens", "run_max_tool_calls", "run_max_seconds"} <= set(
        fields
    )
