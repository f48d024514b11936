"""MCP servers: saving one, and importing its tools as tool definitions (sync)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from tools.models import McpServer, ToolDefinition, ToolKind
from tools.services import tool_save, tool_set_enabled


def mcp_server_save(*, server: McpServer) -> McpServer:
    server.full_clean()
    if server.transport == "http" and not server.url:
        raise ValidationError({"url": "A streamable HTTP server needs its URL."})
    if server.transport == "stdio" and not server.command:
        raise ValidationError({"command": "A stdio server needs the command that starts it."})
    server.save()
    return server


@dataclass
class McpSyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def mcp_server_sync(*, server: McpServer) -> McpSyncReport:
    """Import the server's tools as tool definitions. New ones start disabled: an admin
    enables each one. Tools the server no longer lists are disabled."""
    from tools.mcp_client import mcp_list_tools, mcp_tool_definition_name

    listed = mcp_list_tools(server=server)
    report = McpSyncReport()
    seen = set()
    for remote in listed:
        seen.add(remote.name)
        tool = ToolDefinition.objects.filter(mcp_server=server, mcp_tool_name=remote.name).first()
        is_new = tool is None
        if tool is None:
            name = mcp_tool_definition_name(server.name, remote.name)
            if ToolDefinition.objects.filter(name=name).exists():
                report.skipped.append(f"{remote.name}: a tool named {name} already exists")
                continue
            tool = ToolDefinition(
                name=name,
                kind=ToolKind.MCP,
                mcp_server=server,
                mcp_tool_name=remote.name,
                enabled=False,
                idempotent=remote.idempotent,
            )
        before = tool.version
        tool.description = (remote.description or remote.name)[:4000]
        tool.parameters = remote.parameters
        try:
            with transaction.atomic():
                tool = tool_save(tool=tool)
        except ValidationError as exc:
            report.skipped.append(f"{remote.name}: {'; '.join(exc.messages)}")
            continue
        if is_new:
            report.created.append(tool.name)
        elif tool.version != before:
            report.updated.append(tool.name)
        else:
            report.unchanged.append(tool.name)
    for gone in ToolDefinition.objects.filter(mcp_server=server).exclude(mcp_tool_name__in=seen):
        if gone.enabled:
            tool_set_enabled(tool=gone, enabled=False)
        report.missing.append(gone.name)
    McpServer.objects.filter(pk=server.pk).update(last_synced_at=timezone.now())
    return report
