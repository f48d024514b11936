"""A tool's page gives and takes the tool through versions of the agents (issue 21 item 7):
ticking an agent there saves a new version of it (not published), says so, and the builder
and the running agent agree with what the page shows."""

from __future__ import annotations

import json

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from agentops.agent_config import agent_config_for
from agentops.agents.services import agent_create
from agentops.models import Agent, AgentVersion
from tests.factories import AgentFactory, EndpointFactory
from tools.models import ToolDefinition

pytestmark = pytest.mark.django_db


def tool_form(**overrides: object) -> dict[str, object]:
    data = {
        "name": "order_status",
        "description": "The status of an order.",
        "kind": "http",
        "parameters": json.dumps({"type": "object", "properties": {"id": {"type": "string"}}}),
        "http_method": "GET",
        "http_url": "https://api.example.com/orders/{{id}}",
        "http_body_format": "",
        "response_mode": "body",
        "response_max_chars": "4000",
        "max_response_bytes": "100000",
        "timeout_seconds": "5",
        "retry_max_attempts": "3",
        "retry_base_seconds": "0.2",
        "retry_cap_seconds": "5",
        "idempotent": "on",
        "enabled": "on",
    }
    data.update(overrides)
    return data


def said(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_ticking_an_agent_on_a_tools_page_saves_a_version_of_it(alice):  # type: ignore[no-untyped-def]
    endpoint = EndpointFactory()
    v1 = agent_create(
        slug="support",
        config={"name": "Support", "endpoint": endpoint.pk},
        author=alice,
        publish=True,
    )
    agent = Agent.objects.get(slug="support")
    client = Client()
    client.force_login(alice)

    response = client.post(reverse("tools:create"), tool_form(agents=[agent.pk]))
    assert response.status_code == 302
    tool = ToolDefinition.objects.get(name="order_status")
    v2 = AgentVersion.objects.get(agent=agent, number=2)
    assert v2.config["tools"] == [tool.pk] and v2.author == alice
    assert "order_status" in v2.note
    assert any(
        "support: order_status added, saved as v2 (not published" in m for m in said(response)
    ), said(response)
    agent.refresh_from_db()
    # Not published: what runs is still v1, and the tool page says the agent has it in v2 only.
    assert agent.published_version == v1
    assert agent_config_for(agent=agent, version=agent.published_version).tool_ids == []
    page = client.get(reverse("tools:detail", args=[tool.pk])).content.decode()
    assert "support" in page and "v2, not published yet" in page
    # The builder edits v2, the tool ticked; a save from it keeps the tool (nothing silent).
    builder = client.get(reverse("agents:detail", args=["support"]))
    assert builder.context["form"].initial["tools"] == [tool.pk]
    assert "Editing" in builder.content.decode()

    # Unticking: v3 without it.
    edit = reverse("tools:edit", args=[tool.pk])
    response = client.post(edit, tool_form(agents=[]))
    assert response.status_code == 302
    v3 = AgentVersion.objects.get(agent=agent, number=3)
    assert v3.config["tools"] == []
    assert any("support: order_status removed, saved as v3" in m for m in said(response))
    # Saving the tool again with the same agents changes no agent.
    client.post(edit, tool_form(agents=[]))
    assert AgentVersion.objects.filter(agent=agent).count() == 3


def test_an_agent_with_no_versions_gets_its_first_one_published(alice):  # type: ignore[no-untyped-def]
    """An agent made directly in the database runs its settings as they stand: giving it a
    tool saves and publishes v1, so it keeps answering, now with the tool."""
    agent = AgentFactory()
    client = Client()
    client.force_login(alice)
    response = client.post(reverse("tools:create"), tool_form(agents=[agent.pk]))
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.published_version is not None and agent.published_version.number == 1
    assert len(agent.published_version.config["tools"]) == 1
    assert any("saved as v1 and published" in m for m in said(response))
