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
    as_of = models.DateField(
        null=True, blank=True, help_text="When this price was taken from the provider's list."
    )

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model


class RollupKind(models.TextChoices):
    RUN = "run"
    MODEL = "model"
    TOOL = "tool"
    GUARDRAIL = "guard"


class MetricRollup(models.Model):
    """Aggregates of spans per time bucket (a minute, an hour, or all time), agent and model/tool.

    Kept current by `tracing.jobs.rollup_metrics`; the metrics page, alerts and the
    Prometheus endpoint read only these rows. `latency_hist` counts durations in the fixed
    log-scale buckets of `tracing.metrics.LATENCY_BOUNDS_MS`, so percentiles of any window
    come from summed histograms.

    bucket_seconds 0 is one all-time row per (kind, agent, key), start 1970-01-01: monotonic
    totals for Prometheus counters that retention never deletes.

    kind=run: count = finished runs (succeeded + failed + handed_off + cancelled), `errors`
    = failed, plus run starts, retries, fallbacks and handoffs seen in the bucket. A run
    retried after failing is counted once per ending.
    kind=model / kind=tool: count = calls, `errors` = failed calls, key = model / tool name.
    kind=guard: count = a guardrail's decisions, `errors` = those that tripped it, key = its name.
    """

    bucket_seconds = models.PositiveIntegerField()
    start = models.DateTimeField()
    kind = models.CharField(max_length=8, choices=RollupKind.choices)
    agent = models.CharField(max_length=64, blank=True, default="")
    key = models.CharField(max_length=200, blank=True, default="")
    count = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    succeeded = models.PositiveBigIntegerField(default=0)
    handed_off = models.PositiveBigIntegerField(default=0)
    cancelled = models.PositiveBigIntegerField(default=0)
    started = models.PositiveBigIntegerField(default=0)
    retries = models.PositiveBigIntegerField(default=0)
    fallbacks = models.PositiveBigIntegerField(default=0)
    handoffs = models.PositiveBigIntegerField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    latency_sum_ms = models.FloatField(default=0)
    latency_hist = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bucket_seconds", "start", "kind", "agent", "key"], name="rollup_bucket"
            )
        ]
        indexes = [models.Index(fields=["bucket_seconds", "kind", "start"])]

    def __str__(self) -> str:
        return f"{self.kind}:{self.agent}:{self.key}@{self.start:%Y-%m-%d %H:%M}"


class RollupState(models.Model):
    """Where the rollup job got to in the Span table (one row).

    A span is rolled up once its id is at most `done_upto`. Ids seen at one run become
    eligible at a later run (`candidate_upto`, after the settle time), so a transaction
    that took an id before committing is not skipped.
    """

    done_upto = models.BigIntegerField(default=0)
    candidate_upto = models.BigIntegerField(default=0)
    candidate_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_spans = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"rolled up to span {self.done_upto}"


class AlertMetric(models.TextChoices):
    ERROR_RATE = "error_rate", "Run error rate (failed / finished)"
    P95_LATENCY = "p95_latency", "Run latency p95 (ms)"
    COST = "cost", "Estimated cost in the window"
    HANDOFF_RATE = "handoff_rate", "Handoff rate (handed off / finished)"
    NO_RUNS = "no_runs", "No runs at all in the window"
    QUEUE_DEPTH = "queue_depth", "Runs waiting in the queue now"
    QUEUE_WAIT = "queue_wait", "Oldest queued run's wait now (s)"
    SLA_BREACHES = "sla_breaches", "Handoffs in breach of a service level now (unresolved)"
    BUDGET = "budget", "Budget used now (% of its limit, the fullest budget)"


class AlertRule(models.Model):
    """Fires when `metric` over the last `window_minutes` is above `threshold`.

    `no_runs` fires when no run started or finished in the window (threshold unused);
    `queue_depth`, `queue_wait` and `sla_breaches` are read now, not over the window (see
    alert_gauge_register).
    """

    name = models.CharField(max_length=100, unique=True)
    metric = models.CharField(max_length=20, choices=AlertMetric.choices)
    agent = models.CharField(
        max_length=64, blank=True, default="", help_text="Agent slug; empty for all agents."
    )
    window_minutes = models.PositiveIntegerField(default=15)
    threshold = models.FloatField(default=0)
    min_runs = models.PositiveIntegerField(
        default=1, help_text="Rates are not judged on fewer finished runs than this."
    )
    webhook_url = models.URLField(max_length=500, blank=True, default="")
    enabled = models.BooleanField(default=True)
    firing = models.BooleanField(default=False)
    last_value = models.FloatField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertState(models.TextChoices):
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertEvent(models.Model):
    """A rule firing or resolving; `webhook_*` records what the webhook said."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    state = models.CharField(max_length=10, choices=AlertState.choices)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField()
    message = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)
    webhook_status = models.PositiveIntegerField(null=True, blank=True)
    webhook_error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["rule", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.rule.name} {self.state}"


class RetentionOverride(models.Model):
    """Keep an agent's traces for a different number of days than TRACE_RETENTION_DAYS."""

    agent = models.CharField(max_length=64, unique=True, help_text="Agent slug.")
    days = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.agent}: {self.days} days"
