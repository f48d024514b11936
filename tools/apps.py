from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import AppConfig

if TYPE_CHECKING:
    from tools.executors import ToolContext, ToolResult
    from tools.models import ToolDefinition


class _LazyMcpExecutor:
    """Imports the `mcp` package (about 0.6 s) on the first MCP call, not at every start."""

    def execute(
        self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext
    ) -> ToolResult:
        from tools.mcp_client import McpExecutor

        return McpExecutor().execute(tool, arguments, context)


class ToolsConfig(AppConfig):
    name = "tools"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tools.executors import register_executor
        from tools.http_executor import HttpExecutor
        from tools.models import ToolKind

        register_executor(ToolKind.HTTP, HttpExecutor())
        register_executor(ToolKind.MCP, _LazyMcpExecutor())
