from django.apps import AppConfig


class ToolsConfig(AppConfig):
    name = "tools"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tools.executors import register_executor
        from tools.http_executor import HttpExecutor
        from tools.mcp_client import McpExecutor
        from tools.models import ToolKind

        register_executor(ToolKind.HTTP, HttpExecutor())
        register_executor(ToolKind.MCP, McpExecutor())
