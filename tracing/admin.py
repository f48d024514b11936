from django.contrib import admin

from tracing import models


@admin.register(models.Span)
class SpanAdmin(admin.ModelAdmin):
    list_display = ["name", "trace_id", "seq", "status", "error_class", "duration_ms", "start_time"]
    list_filter = ["name", "status"]
    search_fields = ["trace_id"]


@admin.register(models.ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ["model", "input_per_million", "output_per_million"]
