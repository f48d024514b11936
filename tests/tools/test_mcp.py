"""A real MCP server (built with the `mcp` package) over streamable HTTP on loopback and over
stdio: its tools are imported disabled, enabled one by one, and called through tool_execute."""

from __future__ import annotations

import hashlib
import sys
import uuid

import pytest
from django.urls import reverse

from tests.tools.conftest import MCP_SERVER_SCRIPT, MCP_TOKEN, make_credential
from tests.tools.servers import LoopbackServer
from tools.executors import ToolContext, tool_execute
from tools.mcp_sync import mcp_server_save, mcp_server_sync
from tools.models import McpServer, ToolDefinition
from tools.services import tool_save, tool_set_enabled
from tracing.platform.failures import Failure, FailureClass

SERVER_TOOLS = {
    "demo_add",
    "demo_shout_text",
    "demo_explode",
    "demo_key_digest",
    "demo_nap",
    "demo_place_order",
}


@pytest.fixture
def http_server(db, mcp_http_url, allow_loopback):  # type: ignore[no-untyped-def]
    credential = make_credential("mcp_token", "bearer", MCP_TOKEN)
    return mcp_server_save(
        server=McpServer(name="demo", transport="http", url=mcp_http_url, credential=credential)
    )


def call(tool, arguments):  # type: ignore[no-untyped-def]
    return tool_execute(tool=tool, arguments=arguments, context=ToolContext())


def test_it_imports_tools_disabled_and_calls_them_over_http(http_server):  # type: ignore[no-untyped-def]
    report = mcp_server_sync(server=http_server)
    assert set(report.created) == SERVER_TOOLS
    tools = {t.name: t for t in ToolDefinition.objects.filter(mcp_server=http_server)}
    assert set(tools) == SERVER_TOOLS
    assert not any(t.enabled for t in tools.values())
    add = tools["demo_add"]
    assert add.kind == "mcp" and add.mcp_tool_name == "add"
    assert add.parameters["required"] == ["a", "b"]
    assert tools["demo_shout_text"].mcp_tool_name == "shout-text"

    result = call(add, {"a": 2, "b": 40})
    assert result.content == "42" and result.data == {"result": 42}
    assert call(tools["demo_shout_text"], {"text": "hi"}).content == "HI"

    tool_set_enabled(tool=add, enabled=True)
    again = mcp_server_sync(server=http_server)
    assert set(again.unchanged) == SERVER_TOOLS and not again.created
    assert ToolDefinition.objects.get(name="demo_add").enabled is True
    assert McpServer.objects.get(pk=http_server.pk).last_synced_at is not None


def test_it_classifies_mcp_failures(http_server):  # type: ignore[no-untyped-def]
    mcp_server_sync(server=http_server)
    explode = ToolDefinition.objects.get(name="demo_explode")
    with pytest.raises(Failure) as caught:
        call(explode, {"message": "kaboom"})
    assert caught.value.failure_class == FailureClass.TOOL_ERROR
    assert caught.value.may_have_reached_server is True

    nap = ToolDefinition.objects.get(name="demo_nap")
    nap.timeout_seconds = 0.5
    tool_save(tool=nap)
    with pytest.raises(Failure) as caught:
        call(nap, {"seconds": 3})
    assert caught.value.failure_class == FailureClass.TIMEOUT
    assert caught.value.may_have_reached_server is True

    http_server.credential.set_secret("wrong-token-value")
    http_server.credential.save()
    with pytest.raises(Failure) as caught:
        call(ToolDefinition.objects.get(name="demo_add"), {"a": 1, "b": 2})
    assert caught.value.failure_class == FailureClass.TOOL_ERROR
    assert caught.value.status_code == 401
    assert caught.value.may_have_reached_server is False
    assert "wrong-token-value" not in str(caught.value)


def test_it_passes_the_idempotency_key_in_the_argument_the_tool_names(http_server):  # type: ignore[no-untyped-def]
    mcp_server_sync(server=http_server)
    tool = ToolDefinition.objects.get(name="demo_place_order")
    assert "idempotency_key" in tool.parameters["properties"]
    tool.idempotent = False
    tool.honours_idempotency_key, tool.idempotency_key_argument = True, "idempotency_key"
    tool = tool_save(tool=tool)
    assert set(tool.parameters["properties"]) == {"item"}  # the model is not offered it
    assert tool.parameters["required"] == ["item"]
    context = ToolContext(run_id=uuid.uuid4(), step=1, call_id="call_a")
    first = tool_execute(tool=tool, arguments={"item": "tea"}, context=context)
    again = tool_execute(tool=tool, arguments={"item": "tea"}, context=context)
    other = ToolContext(run_id=context.run_id, step=1, call_id="call_b")
    third = tool_execute(tool=tool, arguments={"item": "tea"}, context=other)
    assert first.content == again.content != third.content
    # A later sync keeps the declaration and the schema the model sees: no new version.
    report = mcp_server_sync(server=http_server)
    assert "demo_place_order" in report.unchanged
    tool.refresh_from_db()
    assert tool.honours_idempotency_key and set(tool.parameters["properties"]) == {"item"}


def test_it_never_sends_mcp_arguments_that_fail_the_schema(db, allow_loopback):  # type: ignore[no-untyped-def]
    recorder = LoopbackServer()
    try:
        server = mcp_server_save(
            server=McpServer(name="rec", transport="http", url=recorder.url("/mcp"))
        )
        tool = tool_save(
            tool=ToolDefinition(
                name="rec_add",
                description="add",
                kind="mcp",
                mcp_server=server,
                mcp_tool_name="add",
                parameters={
                    "type": "object",
                    "properties": {"a": {"type": "integer"}},
                    "required": ["a"],
                },
            )
        )
        with pytest.raises(Failure) as caught:
            call(tool, {"a": "one"})
        assert caught.value.failure_class == FailureClass.INVALID_REQUEST
        assert recorder.requests == []
    finally:
        recorder.stop()


def test_it_refuses_an_mcp_server_outside_the_allowlist(db, mcp_http_url, settings):  # type: ignore[no-untyped-def]
    settings.TOOL_EGRESS_ALLOWLIST = []
    server = mcp_server_save(server=McpServer(name="blocked", transport="http", url=mcp_http_url))
    with pytest.raises(Failure) as caught:
        mcp_server_sync(server=server)
    assert "loopback address" in str(caught.value)
    assert caught.value.may_have_reached_server is False
    assert not ToolDefinition.objects.filter(mcp_server=server).exists()


def test_it_runs_a_stdio_server_with_the_credential_in_its_environment(db):  # type: ignore[no-untyped-def]
    secret = "stdio-api-key-5150"
    credential = make_credential("stdio_key", "api_key", secret)
    server = mcp_server_save(
        server=McpServer(
            name="local",
            transport="stdio",
            command=sys.executable,
            args=[MCP_SERVER_SCRIPT, "stdio"],
            credential=credential,
        )
    )
    report = mcp_server_sync(server=server)
    assert "local_key_digest" in report.created
    digest = ToolDefinition.objects.get(name="local_key_digest")
    assert call(digest, {}).content == hashlib.sha256(secret.encode()).hexdigest()


def test_it_syncs_and_enables_from_the_mcp_page(client, alice, http_server):  # type: ignore[no-untyped-def]
    client.force_login(alice)
    response = client.post(reverse("tools:mcp_sync", args=[http_server.pk]), follow=True)
    page = response.content.decode()
    assert "6 new (disabled until you enable them)" in page
    assert 'data-tool="demo_add"' in page
    add = ToolDefinition.objects.get(name="demo_add")
    response = client.post(
        reverse("tools:toggle", args=[add.pk]),
        {"enabled": "1", "next": reverse("tools:mcp", args=[http_server.pk])},
    )
    assert response.status_code == 302 and response["Location"] == reverse(
        "tools:mcp", args=[http_server.pk]
    )
    add.refresh_from_db()
    assert add.enabled is True and add.version == 2
    assert MCP_TOKEN not in client.get(reverse("tools:mcp", args=[http_server.pk])).content.decode()


def test_it_refreshes_an_oauth2_token_the_mcp_server_refuses(db, mcp_http_url, allow_loopback):  # type: ignore[no-untyped-def]
    """The first token the endpoint issues is stale to the MCP server: 401, one refresh, done."""
    tokens = LoopbackServer()
    issued: list[str] = []

    @tokens.route("/token")
    def token(h):  # type: ignore[no-untyped-def]
        issued.append("stale-token-0001" if not issued else MCP_TOKEN)
        h.send_json(200, {"access_token": issued[-1], "expires_in": 3600})

    try:
        credential = make_credential(
            "mcp_oauth",
            "oauth2",
            "mcp-client-secret",
            token_url=tokens.url("/token"),
            client_id="mcp-client",
        )
        server = mcp_server_save(
            server=McpServer(
                name="oauthmcp", transport="http", url=mcp_http_url, credential=credential
            )
        )
        report = mcp_server_sync(server=server)
        assert "oauthmcp_add" in report.created
        assert issued == ["stale-token-0001", MCP_TOKEN]
        assert (
            call(ToolDefinition.objects.get(name="oauthmcp_add"), {"a": 1, "b": 1}).content == "2"
        )
        assert len(issued) == 2
    finally:
        tokens.stop()
