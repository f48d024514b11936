"""The ASGI side of `/mcp/`: the `mcp` package's low-level server behind its
`StreamableHTTPSessionManager`, mounted in front of Django like `/v1/`.

Each request carries the personal API key (`Authorization: Bearer ao_…`); it is checked here
(agentops/asgi_http.py, as for `/v1/` and the event streams) before the MCP transport sees the
request, and the key's holder travels in the ASGI scope to the handlers (`ctx.request.scope`).
A tool call in progress ends as every stream does when the key is deleted or its user
deactivated or demoted (an `access_revoked` tool error). The manager is stateless (no `Mcp-Session-Id`; every POST is
a connection of its own), so any number of server processes can serve one client, and answers
are JSON (`json_response`): a tool call is one POST answered once the agent's run has ended.

A tool call is one turn of a session, posted and awaited by the same code as
`POST /v1/chat/completions` (`openai_compat.app.ChatCompletion.converse`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import mcp_types as types
from channels.db import database_sync_to_async
from django.db import DatabaseError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from starlette.types import Receive, Scope, Send

from agentops import asgi_http
from agentops.asgi_http import InvalidKey
from agentops.auth import KeyHolder
from agentops.models import Agent
from agentops.openai_compat import selectors
from agentops.openai_compat.app import HANDOFF_NOTICE, ApiError, ChatCompletion
from agentops.openai_compat.services import SessionNotFound, chat_session_resolve
from agentops.runtime.services import MAX_MESSAGE_CHARS
from tracing.platform.logs import get_logger

log = get_logger(__name__)

PREFIX = "/mcp/"
USER_KEY = "agentops.user"
# A tool's description carries the first line of the agent's prompt only when it is short.
PROMPT_LINE_CHARS = 200

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "description": "What to say to the agent."},
        "session_id": {
            "type": "string",
            "description": "Continue this session (the session_id of an earlier answer); "
            "without it, a new session starts.",
        },
    },
    "required": ["message"],
    "additionalProperties": False,
}
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"},
        "run_id": {"type": ["string", "null"]},
        "status": {"type": "string"},
        "handoff": {"type": ["object", "null"]},
    },
    "required": ["session_id", "run_id", "status", "handoff"],
}


def tool_description(agent: Agent) -> str:
    first = next((line.strip() for line in agent.system_prompt.splitlines() if line.strip()), "")
    description = f"Talk to the agent {agent.name!r}: send a message, get its answer."
    if first and len(first) <= PROMPT_LINE_CHARS:
        description += f" {first}"
    return description


def agent_tool(agent: Agent) -> types.Tool:
    return types.Tool(
        name=agent.slug,
        title=agent.name,
        description=tool_description(agent),
        input_schema=INPUT_SCHEMA,
        output_schema=OUTPUT_SCHEMA,
    )


def request_holder(ctx: ServerRequestContext[Any, Any]) -> KeyHolder:
    request = ctx.request
    holder = request.scope.get(USER_KEY) if request is not None else None
    if not isinstance(holder, KeyHolder):  # every request passes `endpoint`'s key check first
        raise MCPError(types.INVALID_REQUEST, "no authenticated user on this request")
    return holder


def request_user(ctx: ServerRequestContext[Any, Any]) -> Any:
    return request_holder(ctx).user


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    user = request_user(ctx)
    agents = await database_sync_to_async(selectors.agents_listed)(user=user)
    return types.ListToolsResult(tools=[agent_tool(a) for a in agents])


def tool_error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


class AgentCall(ChatCompletion):
    """One tool call: the turn of `ChatCompletion`, its outcome kept instead of sent."""

    def __init__(self) -> None:
        super().__init__(response=None, receive=None)  # type: ignore[arg-type]
        self.stream = False
        self.outcome: selectors.RunOutcome | None = None

    async def finish(self, outcome: selectors.RunOutcome) -> None:
        self.outcome = outcome


async def call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    holder = request_holder(ctx)
    user = holder.user
    agent = await database_sync_to_async(selectors.agent_by_model)(user=user, model=params.name)
    if agent is None or agent.slug != params.name:
        raise MCPError(
            types.INVALID_PARAMS,
            f"Unknown tool: {params.name!r} (tools/list names the agents this key may use)",
        )
    arguments = params.arguments or {}
    message = arguments.get("message")
    if not isinstance(message, str) or not message.strip():
        return tool_error("message: required, a non-empty string")
    if "\x00" in message:
        return tool_error("message: must not contain NUL characters")
    if len(message) > MAX_MESSAGE_CHARS:
        return tool_error(f"message: longer than {MAX_MESSAGE_CHARS} characters")
    session_id = arguments.get("session_id") or ""
    if not isinstance(session_id, str):
        return tool_error("session_id: must be a string (the session_id of an earlier answer)")
    try:
        session, _ = await database_sync_to_async(chat_session_resolve)(
            agent=agent, user=user, session_id=session_id.strip(), end_user=""
        )
    except SessionNotFound as exc:
        return tool_error(str(exc).replace("X-Session-Id", "session_id", 1))
    call = AgentCall()
    call.model = agent.slug
    try:
        await call.converse(session, user, message, holder)
    except ApiError as error:  # the session is busy or closed, the wait ran out, bad content
        return tool_error(error.message.replace("messages: ", "message: ", 1))
    outcome = call.outcome
    assert outcome is not None
    structured = {
        "session_id": str(session.pk),
        "run_id": str(outcome.run_id) if outcome.run_id else None,
        "status": outcome.status,
        "handoff": outcome.handoff if outcome.status == "handed_off" else None,
    }
    if outcome.status in ("failed", "cancelled"):
        detail = f"{outcome.error_class}: {outcome.error_message}".strip(": ")
        text = f"The agent's run {outcome.status}" + (f" ({detail})" if detail else "")
        return types.CallToolResult(
            content=[types.TextContent(text=text)], structured_content=structured, is_error=True
        )
    if outcome.status == "handed_off":
        text = HANDOFF_NOTICE
    else:
        text = (outcome.answers or [(0, "")])[-1][1]
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured
    )


server: Server[Any] = Server(
    "agentops",
    instructions="Each tool is an agent of this AgentOps deployment: call it with a message "
    "(and the session_id of an earlier answer to continue that conversation).",
    on_list_tools=list_tools,
    on_call_tool=call_tool,
)


class Endpoint:
    """The key check in front of the MCP transport, and the transport's manager, started on
    the first request (the product's ASGI router has no lifespan events to start it)."""

    def __init__(self) -> None:
        self.manager = StreamableHTTPSessionManager(server, stateless=True, json_response=True)
        self.started: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None

    async def run_manager(self) -> None:
        assert self.started is not None
        async with self.manager.run():
            self.started.set()
            await asyncio.Event().wait()  # for the life of the process

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            holder = await authenticate(scope)
        except ApiError as error:
            await unauthorized(send, error)
            return
        except DatabaseError as exc:
            log.warning("mcp.database_unavailable", error=str(exc)[:300])
            await json_response(
                send, 503, {"error": "unavailable", "error_description": "retry in 2 s"}
            )
            return
        if self.started is None:
            self.started = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self.run_manager())
        await self.started.wait()
        await self.manager.handle_request({**scope, USER_KEY: holder}, receive, send)


async def authenticate(scope: Scope) -> KeyHolder:
    try:
        holder = await asgi_http.key_holder(scope)
    except InvalidKey:
        raise ApiError(401, "invalid API key") from None
    if holder is None:
        raise ApiError(401, "authentication required: send 'Authorization: Bearer <api key>'")
    return holder


async def json_response(send: Send, status: int, body: dict[str, Any]) -> None:
    await asgi_http.Response(send).json(status, body)


async def unauthorized(send: Send, error: ApiError) -> None:
    body = {"error": "invalid_token", "error_description": error.message}
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    await asgi_http.Response(send).json(401, body, headers)


endpoint = Endpoint()


def mount(app: asgi_http.ASGIApp) -> asgi_http.ASGIApp:
    """`/mcp` and `/mcp/…` here, everything else to `app`."""
    return asgi_http.mount(PREFIX, endpoint, app)
