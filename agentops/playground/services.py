"""Playground runs: a recorded model call sent again, as edited, through the runtime's one
guarded model call (client, circuit breaker, retries). Nothing here writes to a session:
tool calls the model proposes are recorded and shown, never executed."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from django.db import transaction

from agentops.events import audit_record
from agentops.models import ModelEndpoint, PlaygroundRun
from agentops.runtime.breaker import BreakerOpen
from agentops.runtime.model_client import model_call_guarded
from agentops.runtime.retry import MODEL_RETRY
from tracing.emit import Tracer
from tracing.platform.failures import Failure

if TYPE_CHECKING:
    from agentops.auth import Actor


def playground_run(
    *,
    source_trace_id: uuid.UUID,
    source_span_id: str,
    endpoint: ModelEndpoint,
    model: str,
    temperature: float | None,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    actor: Actor,
) -> PlaygroundRun:
    """Send the request and record what came back (or the failure). The run is a trace of
    its own (trace id = the run's id, no agent), so its model call, retries and breaker
    events are in the span table and its tokens in the model metrics."""
    run = PlaygroundRun(
        id=uuid.uuid4(),
        created_by=actor if actor is not None and actor.is_authenticated else None,
        source_trace_id=source_trace_id,
        source_span_id=source_span_id,
        endpoint=endpoint,
        endpoint_name=endpoint.name,
        model=model,
        temperature=temperature,
        messages=messages,
        tools=tools,
    )
    tracer = Tracer(run.id, secrets_to_redact=[endpoint.api_key], sandbox=True)
    started = 0.0

    def attempt_started(endpoint: ModelEndpoint, attempt: int) -> None:
        nonlocal started
        run.attempts = attempt
        started = time.perf_counter()

    try:
        reply = model_call_guarded(
            tracer=tracer,
            candidates=[(endpoint, model)],
            policy=MODEL_RETRY,
            messages=messages,
            tools=tools,
            temperature=temperature,
            purpose="playground",
            before_attempt=attempt_started,
        ).reply
    except Failure as failure:
        run.error_class = failure.failure_class.value
        run.error_message = tracer.redact(str(failure) or type(failure).__name__)
        if isinstance(failure, BreakerOpen):
            run.error_message += " (reset it on the endpoint's page to call it now)"
    else:
        run.succeeded = True
        run.output_content = reply.content
        run.output_tool_calls = reply.tool_calls
        run.response_model = reply.model[:200]
        run.input_tokens, run.output_tokens = reply.input_tokens, reply.output_tokens
    if started:
        run.latency_ms = round((time.perf_counter() - started) * 1000, 1)
    with transaction.atomic():
        run.save()
        tracer.flush()
        audit_record(
            actor=actor,
            action="playground.run",
            target=f"{source_trace_id}/{source_span_id}",
            playground_run=str(run.pk),
            model=model,
            endpoint=endpoint.name,
        )
    return run
