from __future__ import annotations

from django.db import models


class SpanStatus(models.TextChoices):
    OK = "ok"
    ERROR = "error"


class Span(models.Model):
    """One span or point event of a trace. A trace is one run (trace_id == run id).

    `seq` orders a trace's records as they were emitted; live streams use it to merge
    what is stored with what arrives, with nothing missing or duplicated.
    """

    trace_id = models.UUIDField()
    seq = models.PositiveIntegerField()
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True, default="")
    name = models.CharField(max_length=64)
    is_event = models.BooleanField(default=False)
    status = models.CharField(max_length=5, choices=SpanStatus.choices, default=SpanStatus.OK)
    error_class = models.CharField(max_length=40, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    duration_ms = models.FloatField(default=0)
    session_id = models.UUIDField(null=True, blank=True)
    agent = models.CharField(max_length=64, blank=True, default="")
    attributes = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trace_id", "seq"], name="span_trace_seq")]
        indexes = [
            models.Index(fields=["name", "start_time"]),
            models.Index(fields=["start_time"]),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.trace_id}#{self.seq})"


class ModelPrice(models.Model):
    """Price per million tokens, for cost estimates. Matched on the model name."""

    model = models.CharField(max_length=200, unique=True)
    input_per_million = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    output_per_million = models.DecimalField(max_digits=10, decimal_places=4, default=0)

    def __str__(self) -> str:
        return self.model
