from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    """Budgets and their spend. Its tables are the `agentops` app's (models' app_label); the
    runtime calls it at a post (admission) and as a run spends; alert rules read its gauge."""

    name = "agentops.budgets"
    label = "budgets"
    verbose_name = "Budgets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agentops.budgets.selectors import budget_fullest
        from tracing.alerts import alert_gauge_register
        from tracing.models import AlertMetric

        alert_gauge_register(metric=AlertMetric.BUDGET, gauge=budget_fullest)
