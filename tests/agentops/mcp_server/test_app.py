"""`/mcp/` through the official `mcp` client (streamable HTTP), against a real uvicorn serving
the product, a real RQ worker and the dev model."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from agentops.auth import api_key_create
from agentops.models import Message, Role, Run, RunStatus, Session, SessionStatus
from agentops.openai_compat.app import HANDOFF_NOTICE
from tests.factories import AgentFactory
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def agent(dev_agent):
    dev_agent.tools.add(*python_tools_sync())
    return dev_agent


@pytest.fixture
def key(bob) -> str:
    return api_key_create(user=bob, name="mcp")[1]


def connect(web: str, key: str, use: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    """Run `use` on an initialized MCP client session with the key."""

    async def main() -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
            async with streamable_http_client(f"http://{web}/mcp/", http_client=http) as (
                read,
                write,
            ):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await use(session)

    try:
        return asyncio.run(main())
    except BaseExceptionGroup as group:  # the client's task groups wrap what was raised
        raise leaf(group) from None


def leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def call(web: str, key: str, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
    async def use(session: ClientSession) -> types.CallToolResult:
        return await session.call_tool(name, arguments)

    return connect(web, key, use)


def text_of(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def user_messages(session_id) -> list[str]:
    return list(
        Message.objects.filter(session_id=session_id, role=Role.USER)
        .order_by("seq")
        .values_list("content", flat=True)
    )


def test_it_lists_the_agents_the_key_may_use_as_tools(web, key, agent, charlie, worker):
    agent.system_prompt = "You answer questions about invoices.\nMore rules follow."
    agent.save()
    other = AgentFactory(system_prompt="x" * 300)

    async def use(session: ClientSession) -> list[types.Tool]:
        return (await session.list_tools()).tools

    tools = connect(web, key, use)
    assert [t.name for t in tools] == sorted([agent.slug, other.slug])
    tool = next(t for t in tools if t.name == agent.slug)
    assert agent.name in (tool.description or "")
    assert "You answer questions about invoices." in (tool.description or "")
    assert "More rules" not in (tool.description or "")
    assert "x" * 300 not in (next(t for t in tools if t.name == other.slug).description or "")
    assert tool.input_schema["required"] == ["message"]
    assert set(tool.input_schema["properties"]) == {"message", "session_id"}

    viewer_key = api_key_create(user=charlie, name="viewer")[1]
    assert connect(web, viewer_key, use) == []


def test_it_answers_a_tool_call_with_the_agents_reply(web, key, agent, worker):
    result = call(web, key, agent.slug, {"message": "hello there"})
    assert result.is_error is False
    assert text_of(result) == "You said: hello there"
    structured = result.structured_content or {}
    run = Run.objects.get(pk=structured["run_id"])
    assert run.status == RunStatus.SUCCEEDED and structured["status"] == "succeeded"
    assert str(run.session_id) == structured["session_id"]
    assert structured["handoff"] is None
    assert user_messages(run.session_id) == ["hello there"]


def test_it_continues_a_session_given_its_id(web, key, agent, worker):
    first = call(web, key, agent.slug, {"message": "one"})
    session_id = (first.structured_content or {})["session_id"]
    second = call(web, key, agent.slug, {"message": "two", "session_id": session_id})
    assert text_of(second) == "You said: two"
    assert (second.structured_content or {})["session_id"] == session_id
    assert user_messages(session_id) == ["one", "two"]
    fresh = call(web, key, agent.slug, {"message": "three"})
    assert (fresh.structured_content or {})["session_id"] != session_id

    other = Session.objects.create(agent=AgentFactory())
    for wrong in (str(other.pk), "not-a-uuid"):
        refused = call(web, key, agent.slug, {"message": "four", "session_id": wrong})
        assert refused.is_error is True
        assert text_of(refused).startswith("session_id:")
    assert not Message.objects.filter(content="four").exists()


def test_it_says_a_person_will_join_when_the_agent_hands_off(web, key, agent, worker):
    result = call(web, key, agent.slug, {"message": "I want a human please"})
    assert result.is_error is False
    assert text_of(result) == HANDOFF_NOTICE
    structured = result.structured_content or {}
    assert structured["status"] == "handed_off"
    assert structured["handoff"]["status"] == "open"
    session = Session.objects.get(pk=structured["session_id"])
    assert session.status == SessionStatus.HANDED_OFF

    # While the person has it, the message waits for them: no run, the same notice.
    again = call(web, key, agent.slug, {"message": "are you there?", "session_id": str(session.pk)})
    assert text_of(again) == HANDOFF_NOTICE and again.is_error is False
    assert (again.structured_content or {})["run_id"] is None
    assert user_messages(session.pk) == ["I want a human please", "are you there?"]


def test_it_reports_a_failed_run_as_a_tool_error(web, key, agent, devmodel, model_name, worker):
    devmodel.script(model_name, faults=[{"status": 401}, {"status": 401}])
    result = call(web, key, agent.slug, {"message": "hi"})
    assert result.is_error is True
    run = Run.objects.get(session__agent=agent)
    assert run.status == RunStatus.FAILED
    assert text_of(result) == f"The agent's run failed ({run.error_class}: {run.error_message})"
    assert "Traceback" not in text_of(result)
    assert (result.structured_content or {})["status"] == "failed"


def test_it_refuses_an_unknown_tool_and_bad_arguments(web, key, agent, charlie, worker):
    with pytest.raises(MCPError) as raised:
        call(web, key, "no-such-agent", {"message": "hi"})
    assert raised.value.error.code == types.INVALID_PARAMS
    assert "no-such-agent" in raised.value.error.message

    viewer_key = api_key_create(user=charlie, name="viewer")[1]
    with pytest.raises(MCPError):  # a viewer may use no agent
        call(web, viewer_key, agent.slug, {"message": "hi"})

    for arguments in ({}, {"message": "  "}, {"message": "a\u0000b"}):
        result = call(web, key, agent.slug, arguments)
        assert result.is_error is True and text_of(result).startswith("message:")
    assert not Message.objects.exists()


def test_it_refuses_missing_and_invalid_keys(web, agent):
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    for auth in ({}, {"Authorization": "Bearer ao_not-a-real-key"}, {"Authorization": "Basic x"}):
        response = httpx.post(f"http://{web}/mcp/", json=initialize, headers={**headers, **auth})
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"] == "invalid_token"

    with pytest.raises(MCPError):  # the official client: the 401 fails its first request
        call(web, "ao_not-a-real-key", agent.slug, {"message": "hi"})
    assert not Message.objects.exists()


def test_it_serves_a_client_of_the_2025_protocol_with_plain_json(web, key, agent):
    """What an IDE's client of the 2025-06-18 revision sends: JSON-RPC POSTs, JSON answers."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "ide", "version": "1"},
        },
    }
    response = httpx.post(f"http://{web}/mcp/", json=initialize, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["result"]["protocolVersion"] == "2025-06-18"
    assert "mcp-session-id" not in response.headers  # stateless

    listing = httpx.post(
        f"http://{web}/mcp",
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}},
        headers={**headers, "MCP-Protocol-Version": "2025-06-18"},
    )
    assert listing.status_code == 200, listing.text
    tools = listing.json()["result"]["tools"]
    assert [t["name"] for t in tools] == [agent.slug]
    assert tools[0]["inputSchema"]["required"] == ["message"]
