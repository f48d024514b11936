"""The tools API (agentops/api_tools.py): admins read tools and their versions and change a
tool's idempotency key (a new version each change), with 422 naming the field; the OpenAPI
schema describes it."""

from __future__ import annotations

import pytest
from django.test import Client

from agentops.auth import api_key_create
from tests.tools.conftest import make_http_tool
from tools.models import ToolDefinition, ToolVersion

pytestmark = pytest.mark.django_db


def auth(user) -> dict:  # type: ignore[no-untyped-def]
    return {"HTTP_AUTHORIZATION": f"Bearer {api_key_create(user=user, name='t')[1]}"}


@pytest.fixture
def schema(client, alice):  # type: ignore[no-untyped-def]
    found = client.get("/api/openapi.json", **auth(alice)).json()
    assert "/api/tools/{tool_id}" in found["paths"]
    return found


def patch(client: Client, tool: ToolDefinition, body: dict, user):  # type: ignore[no-untyped-def]
    return client.patch(
        f"/api/tools/{tool.pk}", body, content_type="application/json", **auth(user)
    )


def test_it_changes_the_idempotency_key_as_a_new_version(client, alice, schema):  # type: ignore[no-untyped-def]
    tool = make_http_tool("refund", "https://api.example.com/refunds", method="POST")
    got = client.get(f"/api/tools/{tool.pk}", **auth(alice)).json()
    assert got["honours_idempotency_key"] is False
    assert got["idempotency_header"] == "Idempotency-Key"

    body = {"honours_idempotency_key": True, "idempotency_header": "X-Request-Key"}
    response = patch(client, tool, body, alice)
    assert response.status_code == 200, response.json()
    assert response.json()["honours_idempotency_key"] is True
    assert response.json()["idempotency_header"] == "X-Request-Key"
    assert response.json()["version"] == 2
    versions = client.get(f"/api/tools/{tool.pk}/versions", **auth(alice)).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["snapshot"]["honours_idempotency_key"] is True
    assert set(versions[0]["changed"]) == {"honours_idempotency_key", "http_config"}
    assert ToolVersion.objects.filter(tool=tool).count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"honours_idempotency_key": True, "idempotency_header": ""}, "idempotency_header"),
        ({"idempotency_header": "Bad Header:"}, "idempotency_header"),
        ({"idempotency_key_argument": "1x"}, "idempotency_key_argument"),
        ({"name": "renamed"}, "name"),
    ],
)
def test_it_names_the_field_and_keeps_the_tool_on_bad_input(client, alice, schema, body, field):  # type: ignore[no-untyped-def]
    tool = make_http_tool("refund", "https://api.example.com/refunds", method="POST")
    response = patch(client, tool, body, alice)
    assert response.status_code == 422, response.json()
    assert response.json()["field"] == field, response.json()
    tool.refresh_from_db()
    assert tool.version == 1 and not tool.honours_idempotency_key


def test_a_get_tool_cannot_say_it_honours_a_key(client, alice, schema):  # type: ignore[no-untyped-def]
    tool = make_http_tool("lookup", "https://api.example.com/items")
    response = patch(client, tool, {"honours_idempotency_key": True}, alice)
    assert response.status_code == 422
    assert response.json()["field"] == "honours_idempotency_key"
    assert "carries no idempotency key" in response.json()["error"]


def test_only_admins_use_it_and_the_schema_describes_it(client, alice, bob, schema):  # type: ignore[no-untyped-def]
    tool = make_http_tool("refund", "https://api.example.com/refunds", method="POST")
    assert client.get("/api/tools", **auth(bob)).status_code == 403
    assert patch(client, tool, {"enabled": False}, bob).status_code == 403
    assert [t["name"] for t in client.get("/api/tools", **auth(alice)).json()] == ["refund"]
    for path in ("/api/tools", "/api/tools/{tool_id}", "/api/tools/{tool_id}/versions"):
        assert path in schema["paths"], path
    properties = schema["components"]["schemas"]["ToolPatch"]["properties"]
    assert {"honours_idempotency_key", "idempotency_key_argument", "idempotency_header"} <= set(
        properties
    )
    assert "once per idempotency key" in properties["honours_idempotency_key"]["description"]
