"""Datasets of conversation turns, and experiments that run them against agent versions."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Dataset(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ItemSource(models.TextChoices):
    RUN = "run"
    FAILURE = "failure"
    HANDOFF = "handoff"
    IMPORT = "import"
    API = "api"


class DatasetItem(models.Model):
    """One conversation turn: the user's `input`, the conversation before it (`context`, a
    list of {role, content} with role user or assistant) and the answer hoped for."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    input = models.TextField()
    context = models.JSONField(default=list, blank=True)
    reference = models.TextField(blank=True, default="")
    source = models.CharField(max_length=10, choices=ItemSource.choices)
    # The run that answered this turn: an experiment answers non-idempotent tool calls from
    # its recorded calls.
    source_run = models.ForeignKey(
        "agentops.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "pk"]

    def __str__(self) -> str:
        return f"item {self.pk} of {self.dataset_id}"


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft"
    RUNNING = "running"
    FINISHED = "finished"


class Experiment(models.Model):
    name = models.CharField(max_length=200)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="experiments")
    status = models.CharField(
        max_length=10, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT
    )
    # The publish gate: a variant whose mean score ends below it is flagged.
    threshold = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Mean score (0 to 1) a version needs to pass this experiment's gate.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Variant(models.Model):
    """One agent version the dataset runs against; the first (position 0) is the baseline."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    position = models.PositiveIntegerField(default=0)
    version = models.ForeignKey(
        "agentops.AgentVersion", on_delete=models.PROTECT, related_name="experiment_variants"
    )
    label = models.CharField(max_length=200)

    class Meta:
        ordering = ["experiment", "position"]

    def __str__(self) -> str:
        return self.label


class CheckKind(models.TextChoices):
    EXACT = "exact", "exact match"
    CONTAINS = "contains"
    REGEX = "regex"
    JSON_SCHEMA = "json_schema", "JSON schema"
    JUDGE = "judge", "LLM as judge"


class Check(models.Model):
    """How an answer is scored. `expected` is the text (exact, contains) or pattern (regex);
    empty means the item's reference. A judge reads `rubric` and is run by `endpoint`/`model`."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="checks")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=12, choices=CheckKind.choices)
    expected = models.TextField(blank=True, default="")
    schema = models.JSONField(null=True, blank=True)
    rubric = models.TextField(blank=True, default="")
    endpoint = models.ForeignKey(
        "agentops.ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["experiment", "position"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        if self.kind == CheckKind.JUDGE:
            return "judge"
        if self.kind == CheckKind.JSON_SCHEMA:
            return "JSON schema"
        if self.expected:
            return f"{self.kind} {self.expected[:30]!r}"
        return f"{self.kind} reference"


class ResultStatus(models.TextChoices):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    SCORING = "scoring"
    DONE = "done"
    ERROR = "error"


IN_FLIGHT = (ResultStatus.STARTING, ResultStatus.RUNNING, ResultStatus.SCORING)


class Result(models.Model):
    """One item answered by one variant, in a session of its own pinned to the version."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="results")
    item = models.ForeignKey(DatasetItem, on_delete=models.CASCADE, related_name="results")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="results")
    status = models.CharField(
        max_length=10, choices=ResultStatus.choices, default=ResultStatus.PENDING
    )
    session = models.ForeignKey(
        "agentops.Session", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    run = models.ForeignKey(
        "agentops.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    run_status = models.CharField(max_length=12, blank=True, default="")
    output = models.TextField(blank=True, default="")
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    tool_calls = models.PositiveIntegerField(default=0)
    # {check id: {"score": 0..1 or null, "detail": str, "error": str}}
    scores = models.JSONField(default=dict, blank=True)
    score = models.FloatField(null=True, blank=True)
    error_class = models.CharField(max_length=40, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_traceback = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["experiment", "item", "variant__position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "variant"], name="result_item_variant")
        ]
        indexes = [
            models.Index(fields=["experiment", "status"]),
            models.Index(fields=["run"]),
        ]

    def __str__(self) -> str:
        return f"result {self.pk}"
