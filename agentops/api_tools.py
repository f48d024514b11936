"""Tools through the API, under the pages' rules (admins only): list, read, their kept
versions, and changes to a tool's description, switches, failure handling and idempotency
key (each change a new version). Bad input is a 422 naming the field; nothing is stored then.
Defining a tool's request or schema stays on its page (/tools/)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Path, Router, Schema
from pydantic import ConfigDict, Field

from agentops.api import BODY_ERRORS, FOUND_ERRORS, MAX_INT, Text
from agentops.auth import role_require
from tools.http_executor import DEFAULT_IDEMPOTENCY_HEADER
from tools.models import ToolDefinition, ToolKind
from tools.selectors import tool_versions
from tools.services import tool_update

router: Router = Router(tags=["tools"])

ToolId = Annotated[int, Path(ge=1, le=MAX_INT)]

HONOURS = (
    "The tool's service makes a change once per idempotency key and answers a repeated key "
    "with its first answer: a call whose outcome is unknown after a crash is sent again with "
    "the same key (run:step:call id) instead of handed to a person"
)
ARGUMENT = "Python and MCP tools: the argument the key is passed in (not offered to the model)"
HEADER = (
    "HTTP tools: the request header the key is sent in (not with GET or HEAD); empty: none. "
    "null for other kinds"
)


class ToolOut(Schema):
    id: int
    name: str
    description: str
    kind: ToolKind
    version: int
    enabled: bool
    parameters: dict[str, Any] = Field(description="The JSON schema the model is offered")
    timeout_seconds: float
    retry_max_attempts: int
    retry_base_seconds: float
    retry_cap_seconds: float
    idempotent: bool
    requires_approval: bool
    honours_idempotency_key: bool = Field(description=HONOURS)
    idempotency_key_argument: str = Field(description=ARGUMENT)
    idempotency_header: str | None = Field(description=HEADER)
    fallback: str | None = Field(description="The fallback tool's name")
    python_function: str
    http_method: str | None
    http_url: str | None
    mcp_server: int | None
    mcp_tool_name: str
    created_at: datetime
    updated_at: datetime


class ToolPatch(Schema):
    """Leave a field out to keep it."""

    model_config = ConfigDict(extra="forbid")

    description: Text | None = Field(default=None, min_length=1, max_length=4000)
    enabled: bool | None = None
    timeout_seconds: float | None = Field(default=None, ge=0.1, le=3600)
    retry_max_attempts: int | None = Field(default=None, ge=1, le=100)
    retry_base_seconds: float | None = Field(default=None, ge=0, le=3600)
    retry_cap_seconds: float | None = Field(default=None, ge=0, le=86_400)
    idempotent: bool | None = None
    requires_approval: bool | None = None
    honours_idempotency_key: bool | None = Field(default=None, description=HONOURS)
    idempotency_key_argument: Text | None = Field(default=None, max_length=64, description=ARGUMENT)
    idempotency_header: Text | None = Field(default=None, max_length=100, description=HEADER)


class ToolVersionOut(Schema):
    version: int
    created_at: datetime
    changed: list[str] = Field(description="The fields changed from the version before")
    snapshot: dict[str, Any]


def tool_out(tool: ToolDefinition) -> dict[str, Any]:
    config = tool.http_config or {}
    http = tool.kind == ToolKind.HTTP
    return {
        **{
            name: getattr(tool, name)
            for name in (
                "id",
                "name",
                "description",
                "kind",
                "version",
                "enabled",
                "parameters",
                "timeout_seconds",
                "retry_max_attempts",
                "retry_base_seconds",
                "retry_cap_seconds",
                "idempotent",
                "requires_approval",
                "honours_idempotency_key",
                "idempotency_key_argument",
                "python_function",
                "mcp_tool_name",
                "created_at",
                "updated_at",
            )
        },
        "idempotency_header": (
            config.get("idempotency_header", DEFAULT_IDEMPOTENCY_HEADER) if http else None
        ),
        "fallback": tool.fallback.name if tool.fallback_id and tool.fallback else None,
        "http_method": config.get("method", "GET") if http else None,
        "http_url": config.get("url", "") if http else None,
        "mcp_server": tool.mcp_server_id,
    }


def _tool(tool_id: int) -> ToolDefinition:
    return get_object_or_404(ToolDefinition.objects.select_related("fallback"), pk=tool_id)


@router.get("/tools", response={200: list[ToolOut], **FOUND_ERRORS}, summary="List tools")
def list_tools(request: HttpRequest) -> list[dict[str, Any]]:
    role_require(user=request.user, role="admin")
    return [tool_out(t) for t in ToolDefinition.objects.select_related("fallback")]


@router.get("/tools/{tool_id}", response={200: ToolOut, **FOUND_ERRORS})
def get_tool(request: HttpRequest, tool_id: ToolId) -> dict[str, Any]:
    role_require(user=request.user, role="admin")
    return tool_out(_tool(tool_id))


@router.patch(
    "/tools/{tool_id}",
    response={200: ToolOut, **FOUND_ERRORS, **BODY_ERRORS},
    summary="Change a tool: saved as a new version (the same one if nothing changed)",
)
def update_tool(request: HttpRequest, tool_id: ToolId, payload: ToolPatch) -> dict[str, Any]:
    role_require(user=request.user, role="admin")
    changes = payload.dict(exclude_unset=True)
    tool = tool_update(tool=_tool(tool_id), changes=changes)
    return tool_out(tool)


@router.get(
    "/tools/{tool_id}/versions",
    response={200: list[ToolVersionOut], **FOUND_ERRORS},
    summary="A tool's kept versions, newest first",
)
def list_tool_versions(request: HttpRequest, tool_id: ToolId) -> list[dict[str, Any]]:
    role_require(user=request.user, role="admin")
    return tool_versions(tool=_tool(tool_id))
