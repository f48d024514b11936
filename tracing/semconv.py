"""Names of spans, events and attributes shared by the emitters and the readers.

Attribute names follow the OpenTelemetry GenAI semantic conventions where one exists.
"""

from __future__ import annotations

# Spans
STEP = "step"
MODEL_CALL = "model.call"
TOOL_CALL = "tool.call"
MEMORY_RECALL = "memory.recall"
MEMORY_WRITE = "memory.write"
MEMORY_SUMMARIZE = "memory.summarize"
CONTEXT_ASSEMBLE = "context.assemble"
RETRY_WAIT = "retry.wait"
CHECKPOINT = "checkpoint"
HANDOFF = "handoff"
# Point events
FALLBACK = "fallback"
TOOL_REJECTED = "tool.rejected"
RUN_STATUS = "run.status"
GUARDRAIL = "guardrail"  # one decision: `guardrail.name`, `guardrail.outcome`
GUARDRAIL_NAME = "guardrail.name"
GUARDRAIL_OUTCOME = "guardrail.outcome"
RUN_WAIT = "run.wait"  # a pause (backoff, approval): `wait.reason`, `wait.wake_at`; no error

# Attributes
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
ERROR_TYPE = "error.type"
# What a model call was sent and answered, kept so the playground can reopen it exactly.
# OpenTelemetry's opt-in GenAI content attributes, holding the OpenAI chat format as sent.
INPUT_MESSAGES = "gen_ai.input.messages"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"
OUTPUT_MESSAGES = "gen_ai.output.messages"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
CONTENT_TRUNCATED = "agentops.content_truncated"
# On every span of a trace that is no production traffic (a sandbox session's run, a
# playground call, an experiment's judge): metrics, alerts and Prometheus leave it out.
SANDBOX = "agentops.sandbox"
CONTENT_ATTRIBUTES = frozenset({INPUT_MESSAGES, TOOL_DEFINITIONS, OUTPUT_MESSAGES})

# Run statuses as the runtime reports them on `run.status` events (attribute `status`).
RUN_STARTED = frozenset({"running"})
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
RUN_HANDED_OFF = "handed_off"
RUN_CANCELLED = "cancelled"
RUN_TERMINAL = frozenset({RUN_SUCCEEDED, RUN_FAILED, RUN_HANDED_OFF, RUN_CANCELLED})
