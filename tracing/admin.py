from django.contrib import admin

from tracing import models


class HistoryAdmin(admin.ModelAdmin):
    """What happened is not edited or invented by hand: view (and delete) only."""

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(models.Span)
class SpanAdmin(HistoryAdmin):
    list_display = ["name", "trace_id", "seq", "status", "error_class", "duration_ms", "start_time"]
    list_filter = ["name", "status"]
    search_fields = ["trace_id"]


@admin.register(models.ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ["model", "input_per_million", "output_per_million"]


@admin.register(models.AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "metric",
        "agent",
        "window_minutes",
        "threshold",
        "enabled",
        "firing",
        "last_value",
        "last_evaluated_at",
    ]
    list_filter = ["metric", "enabled", "firing"]
    readonly_fields = ["firing", "last_value", "last_evaluated_at"]


@admin.register(models.AlertEvent)
class AlertEventAdmin(HistoryAdmin):
    list_display = [
        "rule",
        "state",
        "value",
        "threshold",
        "created_at",
        "webhook_status",
        "webhook_error",
    ]
    list_filter = ["state"]


@admin.register(models.RetentionOverride)
class RetentionOverrideAdmin(admin.ModelAdmin):
    list_display = ["agent", "days"]
