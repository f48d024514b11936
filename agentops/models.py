from __future__ import annotations

import uuid
import zoneinfo
from datetime import time
from typing import Any

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from tracing.platform.crypto import decrypt_text, encrypt_text

slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,62}$", "Use lowercase letters, digits and dashes."
)


class BreakerState(models.TextChoices):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class ModelEndpoint(models.Model):
    """An OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp, LiteLLM, the dev model)."""

    name = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    base_url = models.URLField(max_length=500)
    api_key_ciphertext = models.TextField(blank=True, default="", editable=False)
    default_model = models.CharField(max_length=200)
    timeout_seconds = models.FloatField(default=60, validators=[MinValueValidator(0.1)])
    breaker_cooldown_seconds = models.FloatField(
        default=30, help_text="How long the breaker stays open before a half-open probe."
    )
    breaker_state = models.CharField(
        max_length=10, choices=BreakerState.choices, default=BreakerState.CLOSED
    )
    breaker_failures = models.PositiveIntegerField(default=0)
    breaker_opened_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    @property
    def api_key(self) -> str:
        return decrypt_text(self.api_key_ciphertext) if self.api_key_ciphertext else ""

    def set_api_key(self, value: str) -> None:
        self.api_key_ciphertext = encrypt_text(value) if value else ""


# Bounds of team and operator policies: beyond them a value is a typo, and the queue's date
# arithmetic (now - minutes) would overflow.
MAX_CAP = 10_000
MAX_POLICY_MINUTES = 366 * 24 * 60
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order


def timezone_validate(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a time zone name such as Europe/Paris or UTC.")


def working_hours_validate(value: Any) -> None:
    """`{"mon": ["09:00", "17:00"], ...}`: a day left out is off; a shift ends after it starts
    on the same day (a night shift is two days' hours)."""
    if not isinstance(value, dict):
        raise ValidationError("Working hours are a mapping of weekday to [start, end].")
    for day, hours in value.items():
        if day not in WEEKDAYS:
            raise ValidationError(f"{day!r} is not a weekday; use {', '.join(WEEKDAYS)}.")
        try:
            start, end = (time.fromisoformat(h) for h in hours)
        except (TypeError, ValueError):
            raise ValidationError(f"{day}: give [start, end] as HH:MM.") from None
        if start >= end:
            raise ValidationError(f"{day}: the shift must end after it starts.")


class AssignmentMode(models.TextChoices):
    MANUAL = "manual", "manual: operators claim"
    ROUND_ROBIN = "round_robin", "automatic: round-robin"
    LEAST_BUSY = "least_busy", "automatic: least busy"


class Team(models.Model):
    """A group of operators that handoffs go to, with its working hours."""

    slug = models.SlugField(max_length=64, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="teams")
    timezone = models.CharField(max_length=64, default="UTC", validators=[timezone_validate])
    working_hours = models.JSONField(default=dict, blank=True, validators=[working_hours_validate])
    # Assignment (see agentops/operators/assignment/services.py, handoff_assign).
    assignment_mode = models.CharField(
        max_length=12, choices=AssignmentMode.choices, default=AssignmentMode.MANUAL
    )
    concurrent_cap = models.PositiveIntegerField(
        default=3,
        validators=[MinValueValidator(1)],
        help_text="Conversations an operator is given at once, unless their own cap says.",
    )
    escalate_after_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="An unclaimed handoff escalates after this long. Empty: never.",
    )
    escalate_to = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The team it escalates to. Empty: the admins.",
    )
    last_assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Service levels, from the handoff's arrival. Empty: no target.
    first_response_minutes = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    resolution_minutes = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:  # what people read, in every list and dropdown
        return self.name


class AgentQuerySet(models.QuerySet["Agent"]):
    def live(self) -> AgentQuerySet:
        """The agents that answer outside their draft chat (Console, widget, API, /v1/, MCP):
        one with a published version, or with no version at all (made directly in the
        database: it runs its settings). Saved but never published: its draft chat only."""
        return self.filter(
            models.Q(published_version__isnull=False)
            | ~models.Exists(AgentVersion.objects.filter(agent=models.OuterRef("pk")))
        )


class Agent(models.Model):
    slug = models.SlugField(max_length=64, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, related_name="agents")
    model = models.CharField(
        max_length=200, blank=True, help_text="Empty: the endpoint's default model."
    )
    system_prompt = models.TextField(blank=True, default="")
    temperature = models.FloatField(null=True, blank=True)
    # No reverse side: tools knows no agent table (it reads this through tools.access).
    tools = models.ManyToManyField("tools.ToolDefinition", blank=True, related_name="+")
    max_steps = models.PositiveIntegerField(default=12, validators=[MinValueValidator(1)])
    # Memory settings.
    context_token_budget = models.PositiveIntegerField(
        default=8000, validators=[MinValueValidator(256)]
    )
    memory_enabled = models.BooleanField(default=True)
    recall_k = models.PositiveIntegerField(default=5)
    # Names of built-in tools (agentops.agent_config.BUILTIN_TOOLS) this agent is not offered.
    builtins_off = models.JSONField(default=list, blank=True)
    # Retry policy for model calls (tools carry their own).
    retry_max_attempts = models.PositiveIntegerField(default=4, validators=[MinValueValidator(1)])
    retry_base_seconds = models.FloatField(default=0.5, validators=[MinValueValidator(0)])
    retry_cap_seconds = models.FloatField(default=30, validators=[MinValueValidator(0)])
    handoff_team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="agents",
        help_text="The team its handoffs go to.",
    )
    # Checks on what goes into and comes out of the model, in order (agentops.guardrails).
    guardrails = models.JSONField(default=list, blank=True)
    # Agents the model may transfer the conversation to (agentops.runtime.transfers).
    transfers = models.JSONField(default=list, blank=True)
    # Agents the model may call as tools (agentops.runtime.agent_calls).
    agent_tools = models.JSONField(default=list, blank=True)
    # Limits on one run: reaching one stops the run with a clear reason. Empty: no limit.
    run_max_cost = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)], help_text="In USD."
    )
    run_max_tokens = models.PositiveIntegerField(null=True, blank=True)
    run_max_tool_calls = models.PositiveIntegerField(null=True, blank=True)
    run_max_seconds = models.FloatField(null=True, blank=True, validators=[MinValueValidator(1)])
    max_concurrent_runs = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "Runs of this agent in flight at once (queued for a worker or running); more wait "
            "their turn. Empty: the AGENT_MAX_CONCURRENT_RUNS setting. 0: no limit."
        ),
    )
    published_version = models.ForeignKey(
        "AgentVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=(
            "The version new conversations run. Empty: only its draft chat runs it (an agent "
            "with no version at all, made directly in the database, runs its current settings)."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AgentQuerySet.as_manager()

    def __str__(self) -> str:
        return self.slug

    @property
    def model_name(self) -> str:
        return self.model or self.endpoint.default_model

    @property
    def is_live(self) -> bool:
        """See AgentQuerySet.live (read from the database: this row may be stale)."""
        return Agent.objects.live().filter(pk=self.pk).exists()


class AgentVersion(models.Model):
    """An immutable snapshot of an agent's behaviour (agentops/agent_config.py owns its shape),
    saved on every change with its author and a note. Runs record the version they ran."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    config = models.JSONField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=500, blank=True, default="")
    # Set on versions made for an experiment or a fork: their diff is against this one, and
    # they are not in the agent's line of saved changes.
    derived_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was last made the published version."
    )

    class Meta:
        ordering = ["agent", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="agentversion_agent_number")
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug} v{self.number}"


class AgentFallback(models.Model):
    """An ordered fallback model: takes the same step when the ones before it fail."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="fallbacks")
    position = models.PositiveIntegerField(default=0)
    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.endpoint.name}:{self.model_name}"

    @property
    def model_name(self) -> str:
        return self.model or self.endpoint.default_model


class SessionStatus(models.TextChoices):
    ACTIVE = "active"
    HANDED_OFF = "handed_off", "Handed off"
    CLOSED = "closed"


class ForkTools(models.TextChoices):
    """What a non-idempotent tool call does in a forked session."""

    REPLAY = "replay", "answered from the origin run's recording, else refused"
    ALLOW = "allow", "executed (allowed when forking)"


class SessionQuerySet(models.QuerySet["Session"]):
    """The one rule for sandbox sessions (docs/architecture.md, "Sandbox sessions"): a
    sandbox session is an experiment's, the builder's draft chat or a fork. It runs like any
    other, but it is no traffic: every list, figure, alert, assignment and takeover of real
    conversations reads `production()`; sandbox ones appear only on their own pages."""

    def production(self) -> SessionQuerySet:
        return self.filter(sandbox=False)

    def sandbox(self) -> SessionQuerySet:
        return self.filter(sandbox=True)


class Session(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="sessions")
    external_user = models.CharField(max_length=200, blank=True, default="")
    title = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(
        max_length=12, choices=SessionStatus.choices, default=SessionStatus.ACTIVE
    )
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Working memory: the running summary covers every message with seq <= summary_upto_seq.
    summary = models.TextField(blank=True, default="")
    summary_upto_seq = models.PositiveIntegerField(default=0)
    scratchpad = models.JSONField(default=dict, blank=True)
    # A session pinned to a version (a fork, an experiment, the builder's draft chat) runs it;
    # others run their agent's published version.
    agent_version = models.ForeignKey(
        AgentVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # An experiment's session, a draft chat or a fork (SessionQuerySet): out of every
    # production list and figure; a handoff ends its run without reaching people (no handoff
    # in the queue, no notification, no webhook); never taken over; memories of its own.
    sandbox = models.BooleanField(default=False)
    last_seq = models.PositiveIntegerField(default=0)
    # A fork (runtime/services.py `run_fork`) continues another session's run from a step; its
    # origin run and step are on its first run (`Run.forked_from`, `Run.forked_at_step`).
    forked_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="forks"
    )
    fork_tools = models.CharField(
        max_length=8,
        choices=ForkTools.choices,
        blank=True,
        default="",
        help_text="In a fork: what a non-idempotent tool call does (empty: not a fork).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SessionQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["agent", "-updated_at"]),
            models.Index(fields=["external_user"]),
            models.Index(fields=["status", "-updated_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug}/{self.id}"

    @property
    def memory_scope(self) -> str:
        """The long-term memory scope its runs read and write (beside the agent-wide one): the
        end user's, or for a sandbox session one of its own, so a test never writes where
        production or another experiment variant reads."""
        return f"sandbox:{self.pk}" if self.sandbox else self.external_user

    @property
    def memory_also_reads(self) -> str:
        """A scope its runs read but never write: a fork recalls its end user's memories, as
        the conversation it continues did (an experiment's or draft chat's user is made up)."""
        return self.external_user if self.sandbox and self.forked_from_id else ""


class Role(models.TextChoices):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"
    OPERATOR = "operator"


class Message(models.Model):
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    tool_calls = models.JSONField(default=list, blank=True)
    tool_call_id = models.CharField(max_length=100, blank=True, default="")
    name = models.CharField(max_length=100, blank=True, default="")
    run = models.ForeignKey(
        "Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    step = models.PositiveIntegerField(null=True, blank=True)
    token_count = models.PositiveIntegerField(default=0)
    # The account that sent it (an operator replying; for a user message, the client: the API
    # key's owner or the console's user). `end_user` names the end user who wrote a user
    # message (the session's external user), who is its author.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    end_user = models.CharField(max_length=200, blank=True, default="")
    # The agent that wrote an assistant message (a conversation can pass between agents).
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["session", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="message_session_seq")
        ]
        indexes = [  # the queue's search (operators/queue/selectors.py, `handoffs_queue`)
            GinIndex(SearchVector("content", config="simple"), name="message_content_fts")
        ]

    def __str__(self) -> str:
        return f"{self.role}#{self.seq}"


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    HANDED_OFF = "handed_off", "Handed off"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING)
FINISHED_RUN_STATUSES = (
    RunStatus.HANDED_OFF,
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
)


class RunQuerySet(models.QuerySet["Run"]):
    def production(self) -> RunQuerySet:
        """Runs of real conversations (SessionQuerySet: sandbox sessions' runs left out)."""
        return self.filter(session__sandbox=False)

    def sandbox(self) -> RunQuerySet:
        return self.filter(session__sandbox=True)


class Run(models.Model):
    """One agent turn: from a user message to an answer, a handoff or a failure.

    The run row is the checkpoint's head: each step appends its messages/tool calls and
    advances `step` in one transaction, fenced by `epoch` so a stale worker cannot write.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="runs")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="runs")
    agent_version = models.ForeignKey(
        AgentVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED)
    trigger = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    epoch = models.PositiveIntegerField(default=0)
    jobs_started = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    state = models.JSONField(default=dict, blank=True)
    wait_reason = models.CharField(max_length=200, blank=True, default="")
    wake_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, default="")
    job_id = models.CharField(max_length=100, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error_class = models.CharField(max_length=40, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_traceback = models.TextField(blank=True, default="")
    model_used = models.CharField(max_length=200, blank=True, default="")
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    model_calls = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    fallbacks = models.PositiveIntegerField(default=0)
    # A fork's first run: it starts as a copy of `forked_from` at the end of `forked_at_step`.
    forked_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="forks"
    )
    forked_at_step = models.PositiveIntegerField(null=True, blank=True)
    fork_edit = models.JSONField(
        default=dict, blank=True, help_text="The message edited at the fork point, if any."
    )
    # An operator asked to take the conversation over: the run stops at its next checkpoint
    # and hands the session off to them (agentops/operators/takeover/services.py, session_take_over).
    takeover_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    takeover_at = models.DateTimeField(null=True, blank=True)
    # The run whose agent transferred the conversation to this run's agent (the same turn).
    transferred_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="transfers"
    )
    # A child run: another agent's run that answers a tool call (`parent_call_id`) of this one.
    parent_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    parent_call_id = models.CharField(max_length=100, blank=True, default="")

    objects = RunQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["agent", "-created_at"]),
            models.Index(fields=["session", "-created_at"]),
            models.Index(fields=["error_class", "-created_at"]),
            models.Index(
                fields=["heartbeat_at"],
                name="run_active_heartbeat",
                condition=models.Q(status__in=["queued", "running", "waiting"]),
            ),
            # The agent's runs in flight and held (runs_dispatch, on every post): without it
            # the count under the agent's lock walks every run the agent ever had.
            models.Index(
                fields=["agent", "enqueued_at", "created_at"],
                name="run_agent_in_flight",
                condition=models.Q(status__in=["queued", "running"]),
            ),
        ]
        constraints = [
            # One child run per tool call, whatever crashes and resumes happen around it.
            models.UniqueConstraint(
                fields=["parent_run", "parent_call_id"],
                name="run_one_child_per_call",
                condition=models.Q(parent_run__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return str(self.id)


class FeedbackRating(models.TextChoices):
    UP = "up"
    DOWN = "down"


class Feedback(models.Model):
    """A person's verdict on a run or on one message: thumbs, an optional 1-5 score, a comment.
    One per person per target; scoring again replaces it. `run` is set for a message too (the
    run that wrote it), so scores count per agent version."""

    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.CASCADE, related_name="feedback"
    )
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="feedback"
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    rating = models.CharField(max_length=4, choices=FeedbackRating.choices)
    score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    comment = models.TextField(blank=True, default="", max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(run__isnull=False) | models.Q(message__isnull=False),
                name="feedback_has_target",
            ),
            models.UniqueConstraint(
                fields=["author", "run"],
                condition=models.Q(message__isnull=True),
                name="feedback_one_per_run",
            ),
            models.UniqueConstraint(
                fields=["author", "message"],
                condition=models.Q(message__isnull=False),
                name="feedback_one_per_message",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rating} by {self.author_id}"


class ToolCallStatus(models.TextChoices):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


class ForkOutcome(models.TextChoices):
    """How a tool call of a forked session was answered ("": not in a fork)."""

    COPIED = "copied", "copied from the origin run (before the fork point)"
    EDITED = "edited", "copied from the origin run with its result edited at the fork point"
    REPLAYED = "replayed", "answered from the origin run's recording"
    REFUSED = "refused", "not executed in a fork"
    EXECUTED = "executed", "executed"


class ToolCall(models.Model):
    """A tool call the model asked for; its idempotency key is (run, step, call id)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tool_calls")
    step = models.PositiveIntegerField()
    call_id = models.CharField(max_length=100)
    tool_name = models.CharField(max_length=100)
    tool_version = models.PositiveIntegerField(null=True, blank=True)
    arguments = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=ToolCallStatus.choices)
    idempotent = models.BooleanField(default=True)
    result = models.TextField(blank=True, default="")
    error_class = models.CharField(max_length=40, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True, default="")
    fork_outcome = models.CharField(
        max_length=8, choices=ForkOutcome.choices, blank=True, default=""
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "step", "call_id"], name="toolcall_idempotency_key"
            )
        ]
        indexes = [
            models.Index(
                fields=["started_at"],
                name="toolcall_awaiting_approval",
                condition=models.Q(status="awaiting_approval"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.tool_name}({self.call_id})"

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}:{self.step}:{self.call_id}"


class HandoffStatus(models.TextChoices):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


class HandoffResolution(models.TextChoices):
    HANDED_BACK = "handed_back"
    CLOSED = "closed"


class Handoff(models.Model):
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="handoffs")
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="handoffs"
    )
    reason = models.TextField()
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="handoffs"
    )
    priority = models.PositiveSmallIntegerField(default=2, help_text="1 is most urgent.")
    status = models.CharField(
        max_length=10, choices=HandoffStatus.choices, default=HandoffStatus.OPEN
    )
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(
        max_length=12, choices=HandoffResolution.choices, blank=True, default=""
    )
    summary = models.TextField(blank=True, default="")
    last_tool_calls = models.JSONField(default=list, blank=True)
    suggested_reply = models.TextField(blank=True, default="")
    # Snoozed (out of the active queue) since `snoozed_at`, until `snoozed_until` or, when
    # that is empty, until the user writes again (agentops/operators/queue/services.py).
    snoozed_at = models.DateTimeField(null=True, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    # An operator took the conversation over before the agent asked (claimed from the start).
    taken_over = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Since when it is in its team's queue (its escalation clock); escalated_at: last escalation.
    team_since = models.DateTimeField(default=timezone.now)
    escalated_at = models.DateTimeField(null=True, blank=True)
    escalated_to_admins = models.BooleanField(default=False)
    assigned_automatically = models.BooleanField(default=False)
    # Service levels: the first operator reply, and each breach stored once when first seen.
    first_response_at = models.DateTimeField(null=True, blank=True)
    first_response_breached_at = models.DateTimeField(null=True, blank=True)
    resolution_breached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "priority", "created_at"])]

    def __str__(self) -> str:
        return f"handoff {self.pk} ({self.status})"


class Presence(models.TextChoices):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


class OperatorState(models.Model):
    """An operator's presence and cap: only an online operator under their cap is given
    conversations automatically. No row: offline, the team's cap.

    `presence` follows the person (operators/presence/services.py): at login, and when an operator
    page opens, it becomes `chosen` (what they last picked, online unless they picked
    otherwise); with no operator page open for OPERATOR_AWAY_AFTER_SECONDS (`seen_at`, kept
    fresh by the open pages' /ws/inbox/), the scheduler's sweep makes it away; at logout,
    offline."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="operator_state"
    )
    presence = models.CharField(max_length=8, choices=Presence.choices, default=Presence.OFFLINE)
    presence_changed_at = models.DateTimeField(default=timezone.now)
    chosen = models.CharField(max_length=8, choices=Presence.choices, default=Presence.ONLINE)
    seen_at = models.DateTimeField(null=True, blank=True)  # an operator page was last open
    concurrent_cap = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Conversations given at once. Empty: the team's cap.",
    )

    def __str__(self) -> str:
        return f"{self.user_id}: {self.presence}"


class HandoffRead(models.Model):
    """An operator's read marker on a handoff: they opened it, and had seen the conversation
    up to `last_seq`. No row: the handoff is unread for them (agentops/operators/work/selectors.py,
    `unread_counts`)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    handoff = models.ForeignKey(Handoff, on_delete=models.CASCADE, related_name="reads")
    last_seq = models.PositiveIntegerField(default=0)
    read_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "handoff"], name="handoff_read_user_handoff")
        ]

    def __str__(self) -> str:
        return f"handoff {self.handoff_id} read by {self.user_id} up to {self.last_seq}"


class NotificationSettings(models.Model):
    """An operator's notification choices (browser permission is the browser's own)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_settings"
    )
    sound = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "notification settings"

    def __str__(self) -> str:
        return f"notifications of {self.user_id}"


class HandoffRating(models.Model):
    """The end user's satisfaction (CSAT) with a conversation an operator closed: one per
    handoff; rating again replaces it."""

    handoff = models.OneToOneField(Handoff, on_delete=models.CASCADE, related_name="rating")
    score = models.PositiveSmallIntegerField(help_text="1 (very unhappy) to 5 (very happy).")
    comment = models.TextField(blank=True, default="")
    end_user = models.CharField(max_length=200, blank=True, default="")
    # The account that sent it (the console's user, the API key's owner); none from the widget.
    rated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(score__gte=1, score__lte=5), name="handoffrating_score_1_to_5"
            )
        ]

    def __str__(self) -> str:
        return f"rating {self.score} of handoff {self.handoff_id}"


class AuditEntry(models.Model):
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=40)
    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    target = models.CharField(max_length=200, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "audit entries"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"]),
            models.Index(fields=["session", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_id} at {self.created_at:%Y-%m-%d %H:%M}"


class ApiKey(models.Model):
    """A personal API key; only its SHA-256 is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class IdempotencyKey(models.Model):
    """The first response to an API POST sent with an `Idempotency-Key` header, kept for
    `IDEMPOTENCY_TTL` (24 h) so a retry gets it again instead of acting twice. `scope` is
    the caller (its API key, or its user for the browser session); see agentops/idempotency.py."""

    scope = models.CharField(max_length=40)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    status_code = models.PositiveSmallIntegerField()
    content_type = models.CharField(max_length=100, blank=True, default="")
    body = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_scope_key")
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key}"


class Invitation(models.Model):
    """A one-time link to join with a role chosen by an admin; only its SHA-256 is stored."""

    token_hash = models.CharField(max_length=64, unique=True)
    role = models.CharField(
        max_length=10,
        choices=[("viewer", "viewer"), ("operator", "operator"), ("admin", "admin")],
    )
    teams = models.ManyToManyField(Team, blank=True, related_name="+")
    note = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"invitation {self.pk} ({self.role})"


class BreakerTransition(models.Model):
    """A change of an endpoint's circuit breaker: opened, half-open probe, closed, or reset."""

    endpoint = models.ForeignKey(
        ModelEndpoint, on_delete=models.CASCADE, related_name="breaker_transitions"
    )
    state = models.CharField(max_length=10, choices=BreakerState.choices)
    reason = models.CharField(max_length=300, blank=True, default="")
    failures = models.PositiveIntegerField(default=0)
    # The trace (a run, or a playground run) whose call moved the breaker; none for a reset.
    trace_id = models.UUIDField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["endpoint", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.endpoint_id} {self.state} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class BreakerCall(models.Model):
    """One model call's outcome on an endpoint: the circuit breaker's sliding window
    (agentops/runtime/breaker.py). Rows older than the window are pruned."""

    endpoint = models.ForeignKey(
        ModelEndpoint, on_delete=models.CASCADE, related_name="breaker_calls"
    )
    at = models.DateTimeField(db_default=Now())  # the database's clock, as the window reads it
    failed = models.BooleanField()
    # The conversation (or, with none, the trace) that made the call: a failure rate counts
    # only once it comes from enough distinct sources.
    source = models.UUIDField()

    class Meta:
        indexes = [models.Index(fields=["endpoint", "at"], name="breaker_call_window")]

    def __str__(self) -> str:
        return f"{self.endpoint_id} {'failed' if self.failed else 'ok'} at {self.at}"


class PlaygroundRun(models.Model):
    """A model call re-run from the playground: what was sent and what came back. It is its
    own trace (trace id = its id) and never touches a session."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The recorded model call it started from (a `model.call` span).
    source_trace_id = models.UUIDField()
    source_span_id = models.CharField(max_length=16)
    endpoint = models.ForeignKey(
        ModelEndpoint, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    endpoint_name = models.CharField(max_length=64)
    model = models.CharField(max_length=200)
    temperature = models.FloatField(null=True, blank=True)
    messages = models.JSONField(default=list)
    tools = models.JSONField(default=list, blank=True)
    succeeded = models.BooleanField(default=False)
    output_content = models.TextField(blank=True, default="")
    output_tool_calls = models.JSONField(default=list, blank=True)
    response_model = models.CharField(max_length=200, blank=True, default="")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    error_class = models.CharField(max_length=40, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["source_trace_id", "source_span_id"])]

    def __str__(self) -> str:
        return f"playground {self.pk} ({self.model})"
