from __future__ import annotations

from django.db import transaction

from tools.models import ToolDefinition, ToolKind, ToolVersion
from tools.registry import registered_tools

VERSIONED_FIELDS = [
    "name", "description", "kind", "parameters", "timeout_seconds", "retry_max_attempts",
    "retry_base_seconds", "retry_cap_seconds", "idempotent", "requires_approval", "enabled",
    "python_function", "http_config", "mcp_tool_name",
]


def tool_snapshot(tool: ToolDefinition) -> dict:
    snapshot = {field: getattr(tool, field) for field in VERSIONED_FIELDS}
    snapshot["fallback"] = tool.fallback.name if tool.fallback_id and tool.fallback else None
    snapshot["credential_id"] = tool.credential_id
    snapshot["mcp_server_id"] = tool.mcp_server_id
    return snapshot


@transaction.atomic
def tool_save(*, tool: ToolDefinition) -> ToolDefinition:
    """Save a tool; a changed definition becomes a new version and the old one is kept."""
    if tool.pk is None:
        tool.version = 1
        tool.full_clean()
        tool.save()
    else:
        previous = ToolDefinition.objects.select_for_update().get(pk=tool.pk)
        if tool_snapshot(previous) == tool_snapshot(tool):
            return tool
        tool.version = previous.version + 1
        tool.full_clean()
        tool.save()
    ToolVersion.objects.create(tool=tool, version=tool.version, snapshot=tool_snapshot(tool))
    return tool


def python_tools_sync() -> list[ToolDefinition]:
    """Create or update a ToolDefinition for every Python tool registered in code."""
    synced = []
    for name, registered in registered_tools().items():
        tool = ToolDefinition.objects.filter(name=name).first() or ToolDefinition(
            name=name, kind=ToolKind.PYTHON
        )
        tool.kind = ToolKind.PYTHON
        tool.description = registered.description
        tool.parameters = registered.parameters
        tool.python_function = name
        tool.idempotent = registered.idempotent
        synced.append(tool_save(tool=tool))
    return synced
