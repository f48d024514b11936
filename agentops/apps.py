import os

from django.apps import AppConfig


class AgentOpsConfig(AppConfig):
    name = "agentops"
    verbose_name = "AgentOps"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import agentops.signals  # noqa: F401  (login lockouts into the audit log)
        from agentops import demo_tools  # noqa: F401  (registers the demo Python tools)
        from agentops.runtime import builtins  # noqa: F401  (registers handoff_to_human, remember, recall, note)
        from agentops.runtime.retention import toolcalls_purge
        from tracing.services import retention_hook_register

        retention_hook_register(name="agentops.toolcalls", hook=toolcalls_purge)
        from agentops.webhooks.services import webhooks_purge

        retention_hook_register(name="agentops.webhooks", hook=webhooks_purge)

        if os.environ.get("AGENTOPS_TESTING_TOOLS") == "1":
            from agentops.testing import tools  # noqa: F401
