from django.apps import AppConfig


class OperatorsConfig(AppConfig):
    """The inbox: queue, assignment, presence, takeover, working a conversation. Its tables
    are the `agentops` app's (models' app_label); it reacts to what the runtime announces
    (a handoff opened, the user wrote) through agentops.hooks."""

    name = "agentops.operators"
    label = "operators"
    verbose_name = "Inbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import agentops.operators.receivers  # noqa: F401  (presence at login and logout)
        from agentops.hooks import event_subscribe, periodic_job_register
        from agentops.operators import jobs
        from agentops.operators.assignment.services import handoff_on_created, teams_on_saved
        from agentops.operators.queue.selectors import sla_breaches
        from agentops.operators.queue.services import handoffs_on_user_message
        from tracing.alerts import alert_gauge_register
        from tracing.models import AlertMetric

        event_subscribe(kinds=["handoff.created"], handler=handoff_on_created)
        event_subscribe(kinds=["session.message"], handler=handoffs_on_user_message)
        event_subscribe(kinds=["team.saved"], handler=teams_on_saved)
        alert_gauge_register(metric=AlertMetric.SLA_BREACHES, gauge=sla_breaches)
        periodic_job_register(func=jobs.handoffs_sweep_job, interval=10, job_timeout=60, ttl=20)
        periodic_job_register(func=jobs.operators_away_job, interval=30, job_timeout=60, ttl=60)
        periodic_job_register(func=jobs.handoffs_wake_job, interval=15, job_timeout=60, ttl=30)
