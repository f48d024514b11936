from django.apps import AppConfig


class AgentOpsConfig(AppConfig):
    name = "agentops"
    verbose_name = "AgentOps"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import agentops.signals  # noqa: F401  (login lockouts into the audit log)
        from agentops import demo_tools  # noqa: F401  (registers the demo Python tools)
        from agentops.hooks import (
            AgentToolAccess,
            agent_directory,
            event_subscribe,
            queue_depth,
            queue_wait,
        )
        from agentops.idempotency import idempotency_keys_purge
        from agentops.models import ModelEndpoint
        from agentops.runtime import builtins  # noqa: F401  (registers handoff_to_human, remember, recall, note)
        from agentops.runtime.agent_calls import child_ended, children_cancel
        from agentops.runtime.retention import toolcalls_purge
        from memory.agents import agent_directory_register
        from tools.access import tool_access_register
        from tools.rotation import key_rotation_register
        from tracing.alerts import alert_gauge_register
        from tracing.models import AlertMetric
        from tracing.retention import retention_hook_register

        retention_hook_register(name="agentops.toolcalls", hook=toolcalls_purge)
        event_subscribe(kinds=["run.status"], handler=child_ended)  # a child run wakes its caller
        event_subscribe(kinds=["run.status"], handler=children_cancel)  # an ended caller's children
        retention_hook_register(name="agentops.idempotency_keys", hook=idempotency_keys_purge)
        agent_directory_register(directory=agent_directory)
        tool_access_register(access=AgentToolAccess())
        key_rotation_register(
            name="endpoint keys",
            model=ModelEndpoint,
            field="api_key_ciphertext",
            what="API key of endpoint",
        )
        alert_gauge_register(metric=AlertMetric.QUEUE_DEPTH, gauge=queue_depth)
        alert_gauge_register(metric=AlertMetric.QUEUE_WAIT, gauge=queue_wait)
