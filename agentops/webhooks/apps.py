from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Signed event webhooks out. Its tables are the `agentops` app's (models' app_label);
    it reacts to what agentops.events records, through agentops.hooks."""

    name = "agentops.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agentops.hooks import event_subscribe, periodic_job_register
        from agentops.webhooks.jobs import webhooks_dispatch_due_job
        from agentops.webhooks.models import WebhookEndpoint
        from agentops.webhooks.services import EMITTED, webhook_event_on_record, webhooks_purge
        from tools.rotation import key_rotation_register
        from tracing.retention import retention_hook_register

        event_subscribe(kinds=EMITTED, handler=webhook_event_on_record)
        retention_hook_register(name="agentops.webhooks", hook=webhooks_purge)
        key_rotation_register(
            name="webhook secrets",
            model=WebhookEndpoint,
            field="secret_ciphertext",
            what="signing secret of webhook",
        )
        periodic_job_register(func=webhooks_dispatch_due_job, interval=5, job_timeout=60, ttl=10)
