"""MCP servers (Model Context Protocol) through the `mcp` package: list a server's tools
and call one, over streamable HTTP (egress-guarded) or a stdio command.

Everything that touches the database happens before the async part starts, so the MCP
session runs in its own event loop with no Django calls inside it. One session per call:
simple and robust; a stdio server is started for the call and stopped after it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment
from mcp.client.streamable_http import streamable_http_client
from mcp_types import (
    CONNECTION_CLOSED,
    AudioContent,
    EmbeddedResource,
    ImageContent,
    TextContent,
    TextResourceContents,
)

from tools.credentials import credential_auth_headers, credential_secret_values
from tools.models import CredentialKind, McpServer, McpTransport, ToolDefinition
from tools.transport import Redactor
from tracing.platform.egress import Resolver, guarded_async_client
from tracing.platform.failures import Failure, FailureClass, retry_after_seconds

if TYPE_CHECKING:
    import httpx
    from mcp.client._transport import Transport
    from mcp_types import CallToolResult

    from tools.executors import ToolContext, ToolResult

T = TypeVar("T")
LIST_TIMEOUT = 30.0
MAX_CONTENT_CHARS = 8000
DEFAULT_STDIO_ENV_VAR = "MCP_API_KEY"


@dataclass
class RemoteTool:
    name: str
    description: str
    parameters: dict[str, Any]
    idempotent: bool


def mcp_tool_definition_name(server_name: str, tool_name: str) -> str:
    """A valid, unique-ish function name for an imported tool: <server>_<tool>."""
    raw = f"{server_name}_{tool_name}"
    name = re.sub(r"[^A-Za-z0-9_]", "_", raw).strip("_") or "mcp_tool"
    if name[0].isdigit():
        name = f"mcp_{name}"
    return name[:64]


@dataclass
class _Connection:
    server_name: str
    transport: str
    url: str
    command: str
    args: list[str]
    headers: dict[str, str]
    env: dict[str, str]
    redactor: Redactor
    # The last HTTP error status the server answered (the mcp package hides it).
    error_status: int | None = None
    retry_after: str | None = None


def _prepare(server: McpServer, *, resolver: Resolver | None) -> _Connection:
    credential = server.credential
    headers: dict[str, str] = {}
    env = get_default_environment()
    if credential is not None:
        if server.transport == McpTransport.HTTP:
            headers = credential_auth_headers(credential=credential, resolver=resolver)
        elif credential.kind == CredentialKind.OAUTH2:
            env[credential.header_name or DEFAULT_STDIO_ENV_VAR] = credential_auth_headers(
                credential=credential, resolver=resolver
            )["Authorization"].removeprefix("Bearer ")
        else:
            env[credential.header_name or DEFAULT_STDIO_ENV_VAR] = credential.secret
    return _Connection(
        server_name=server.name,
        transport=server.transport,
        url=server.url,
        command=server.command,
        args=[str(a) for a in (server.args or [])],
        headers=headers,
        env=env,
        redactor=Redactor(credential_secret_values(credential)),
    )


def _client(connection: _Connection, *, timeout: float, resolver: Resolver | None) -> Client:
    target: Transport | StdioServerParameters
    if connection.transport == McpTransport.HTTP:

        async def on_response(response: httpx.Response) -> None:
            if response.status_code >= 400:
                connection.error_status = response.status_code
                connection.retry_after = response.headers.get("retry-after")

        http_client = guarded_async_client(
            timeout=timeout,
            headers=connection.headers,
            resolver=resolver,
            event_hooks={"response": [on_response]},
        )
        target = streamable_http_client(connection.url, http_client=http_client)
    else:
        target = StdioServerParameters(
            command=connection.command, args=connection.args, env=connection.env
        )
    return Client(target, cache=None, read_timeout_seconds=timeout)


def _run(func: Callable[[], Awaitable[T]]) -> T:
    """Run async code from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(func)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, func).result()


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    found = [exc]
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(found) < 10:
        found.append(cause)
        cause = cause.__cause__ or cause.__context__
    return found


def _classify(
    exc: BaseException, *, connection: _Connection, call_sent: bool, timeout: float
) -> Failure:
    where = f"MCP server {connection.server_name!r}"
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, Failure):
            return Failure(
                leaf.failure_class,
                connection.redactor.text(str(leaf)),
                may_have_reached_server=call_sent and leaf.may_have_reached_server,
                retry_after=leaf.retry_after,
                status_code=leaf.status_code,
            )
    for leaf in leaves:
        if isinstance(leaf, TimeoutError):
            return Failure(
                FailureClass.TIMEOUT,
                f"{where} did not answer within {timeout:g} s.",
                may_have_reached_server=call_sent,
            )
    status = connection.error_status
    if status is not None:
        detail = f"{where} answered HTTP {status}."
        if status == 429:
            return Failure(
                FailureClass.RATE_LIMIT,
                detail,
                status_code=status,
                may_have_reached_server=call_sent,
                retry_after=retry_after_seconds(connection.retry_after),
            )
        if status >= 500:
            return Failure(
                FailureClass.SERVER_ERROR,
                detail,
                status_code=status,
                may_have_reached_server=call_sent,
            )
        return Failure(
            FailureClass.TOOL_ERROR, detail, status_code=status, may_have_reached_server=call_sent
        )
    import httpcore2
    import httpx2

    for leaf in leaves:
        if isinstance(leaf, httpx2.ConnectTimeout | httpcore2.ConnectTimeout):
            return Failure(
                FailureClass.TIMEOUT,
                f"Timed out connecting to {where}.",
                may_have_reached_server=False,
            )
        if isinstance(leaf, httpx2.ConnectError | httpcore2.ConnectError | ConnectionRefusedError):
            return Failure(
                FailureClass.CONNECTION,
                f"Cannot connect to {where}: {leaf}",
                may_have_reached_server=False,
            )
        if isinstance(leaf, httpx2.TransportError | httpcore2.NetworkError | OSError | EOFError):
            return Failure(
                FailureClass.CONNECTION,
                f"The connection to {where} failed: {leaf or type(leaf).__name__}",
                may_have_reached_server=call_sent,
            )
    from mcp import MCPError

    for leaf in leaves:
        if isinstance(leaf, MCPError):
            if leaf.code == CONNECTION_CLOSED:
                return Failure(
                    FailureClass.CONNECTION,
                    f"{where} closed the connection.",
                    may_have_reached_server=call_sent,
                )
            message = connection.redactor.text(leaf.message)
            return Failure(
                FailureClass.TOOL_ERROR,
                f"{where} answered an error: {message}",
                may_have_reached_server=call_sent,
            )
    message = connection.redactor.text(str(exc) or type(exc).__name__)
    return Failure(
        FailureClass.TOOL_ERROR, f"{where} failed: {message}", may_have_reached_server=call_sent
    )


def _call(
    server: McpServer,
    timeout: float,
    resolver: Resolver | None,
    work: Callable[[Client, Callable[[], None]], Awaitable[T]],
) -> T:
    """One session; with an OAuth2 credential, a 401 before the call was sent fetches a new
    token and tries once more."""
    try:
        return _call_once(server, timeout, resolver, work)
    except Failure as failure:
        credential = server.credential
        if not (
            failure.status_code == 401
            and not failure.may_have_reached_server
            and credential is not None
            and credential.kind == CredentialKind.OAUTH2
            and server.transport == McpTransport.HTTP
        ):
            raise
        from tools.credentials import credential_access_token

        credential_access_token(
            credential=credential, stale_token=credential.access_token, resolver=resolver
        )
        return _call_once(server, timeout, resolver, work)


def _call_once(
    server: McpServer,
    timeout: float,
    resolver: Resolver | None,
    work: Callable[[Client, Callable[[], None]], Awaitable[T]],
) -> T:
    connection = _prepare(server, resolver=resolver)
    state = {"call_sent": False}

    def mark_sent() -> None:
        state["call_sent"] = True

    async def run() -> T:
        with anyio.fail_after(timeout):
            client: AbstractAsyncContextManager[Client] = _client(
                connection, timeout=timeout, resolver=resolver
            )
            async with client as session:
                return await work(session, mark_sent)

    try:
        return _run(run)
    except Failure:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise _classify(
            exc, connection=connection, call_sent=state["call_sent"], timeout=timeout
        ) from exc


def mcp_list_tools(*, server: McpServer, resolver: Resolver | None = None) -> list[RemoteTool]:
    """The tools an MCP server offers now (all pages)."""

    async def work(session: Client, mark_sent: Callable[[], None]) -> list[RemoteTool]:
        tools: list[RemoteTool] = []
        cursor = None
        for _ in range(100):
            page = await session.list_tools(cursor=cursor)
            for tool in page.tools:
                annotations = tool.annotations
                idempotent = bool(
                    annotations and (annotations.idempotent_hint or annotations.read_only_hint)
                )
                schema = dict(tool.input_schema or {"type": "object"})
                schema.pop("title", None)
                tools.append(
                    RemoteTool(
                        name=tool.name,
                        description=tool.description or tool.title or "",
                        parameters=schema,
                        idempotent=idempotent,
                    )
                )
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    return _call(server, LIST_TIMEOUT, resolver, work)


def _content_text(result: CallToolResult) -> str:
    parts = []
    for block in result.content or []:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, ImageContent | AudioContent):
            parts.append(f"[{block.type}: {block.mime_type}]")
        elif isinstance(block, EmbeddedResource):
            resource = block.resource
            text = resource.text if isinstance(resource, TextResourceContents) else None
            parts.append(text or f"[resource: {resource.uri}]")
        else:  # a ResourceLink: the content types are a closed union, checked when parsed
            parts.append(f"[resource link: {block.uri}]")
    return "\n".join(parts)


class McpExecutor:
    def __init__(self, resolver: Resolver | None = None) -> None:
        self.resolver = resolver

    def execute(
        self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext
    ) -> ToolResult:
        from tools.credentials import credential_record_use
        from tools.executors import ToolResult

        server = tool.mcp_server
        if server is None or not tool.mcp_tool_name:
            raise Failure(
                FailureClass.TOOL_ERROR,
                f"{tool.name} is not linked to an MCP server tool.",
                may_have_reached_server=False,
            )
        if not server.enabled:
            raise Failure(
                FailureClass.TOOL_ERROR,
                f"The MCP server {server.name!r} is disabled.",
                may_have_reached_server=False,
            )
        if context.tracer is not None:
            for value in credential_secret_values(server.credential):
                context.tracer.add_secret(value)
        name = tool.mcp_tool_name

        async def work(session: Client, mark_sent: Callable[[], None]) -> CallToolResult:
            mark_sent()
            return await session.call_tool(name, arguments)

        if context.exchanges is not None:
            context.exchanges.append(
                {
                    "request": {
                        "server": server.name,
                        "transport": server.transport,
                        "endpoint": server.url
                        if server.transport == McpTransport.HTTP
                        else server.command,
                        "tool": name,
                        "arguments": arguments,
                    }
                }
            )
        result = _call(server, float(tool.timeout_seconds), self.resolver, work)
        text = _content_text(result)
        redactor = Redactor(credential_secret_values(server.credential))
        if context.exchanges is not None:
            context.exchanges[-1]["response"] = {
                "is_error": bool(result.is_error),
                "content": redactor.text(text[:4000]),
                "structured": redactor.value(result.structured_content),
            }
        if result.is_error:
            raise Failure(
                FailureClass.TOOL_ERROR, f"{tool.name} failed: {text[:1000] or 'no detail given'}"
            )
        if server.credential is not None:
            credential_record_use(credential=server.credential)
        data = result.structured_content
        content = text if text else json.dumps(data, ensure_ascii=False, default=str)
        if len(content) > MAX_CONTENT_CHARS:
            content = (
                content[:MAX_CONTENT_CHARS]
                + f"… [truncated {len(content) - MAX_CONTENT_CHARS} chars]"
            )
        return ToolResult(content=content, data=data)
