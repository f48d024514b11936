from typing import Any

from django.apps import AppConfig


class _LazyMcpExecutor:
    """Imports the `mcp` package (about 0.6 s) on the first MCP call, not at every start."""

    def execute(self, tool: Any, arguments: dict[str, Any], context: Any) -> Any:
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
