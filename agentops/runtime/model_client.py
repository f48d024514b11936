"""Model calls through the official `openai` client, streamed, with the client's own
hidden retries turned off (max_retries=0): retries are ours, in runtime/retry.py."""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openai
from django.db import connection

from agentops.models import ModelEndpoint
from agentops.runtime import breaker
from agentops.runtime.errors import classify_model_error
from tracing import semconv
from tracing.emit import Tracer
from tracing.platform.failures import Failure

_clients: dict[tuple[int, str, str, float], openai.OpenAI] = {}


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context per process, shared by every client: building one reads the CA
    bundle (~30 ms), and the forking worker builds it once before it forks."""
    return ssl.create_default_context()


def client_for(endpoint: ModelEndpoint) -> openai.OpenAI:
    api_key = endpoint.api_key or "none"
    key = (endpoint.pk, endpoint.base_url, api_key, endpoint.timeout_seconds)
    client = _clients.get(key)
    if client is None:
        client = openai.OpenAI(
            base_url=endpoint.base_url,
            api_key=api_key,
            max_retries=0,
            timeout=endpoint.timeout_seconds,
            http_client=openai.DefaultHttpxClient(verify=tls_context()),
        )
        _clients[key] = client
    return client


@dataclass
class ModelReply:
    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    finish_reason: str = ""


class TokenSink:
    """Coalesces streamed text into at most one live event per `interval` seconds."""

    def __init__(self, send: Callable[[str], None], interval: float = 0.05) -> None:
        self.send = send
        self.interval = interval
        self.pending: list[str] = []
        self.last = 0.0

    def add(self, text: str) -> None:
        self.pending.append(text)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.pending:
            self.send("".join(self.pending))
            self.pending = []


def model_call_attributes(
    *, endpoint: ModelEndpoint, model: str, attempt: int, purpose: str, messages: int
) -> dict[str, Any]:
    """The attributes of a `model.call` span (OpenTelemetry GenAI names), wherever it is made."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": model,
        "server.address": endpoint.base_url,
        "endpoint": endpoint.name,
        "attempt": attempt,
        "purpose": purpose,
        "messages": messages,
    }


def model_call(
    *,
    tracer: Tracer,
    endpoint: ModelEndpoint,
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    temperature: float | None,
    purpose: str,
    attempt: int = 1,
    on_text: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    breaker_refresh: bool = True,
) -> ModelReply:
    """One model call in a `model.call` span, unless the endpoint's circuit breaker keeps
    it out (BreakerOpen, never retried), and counted on that breaker. `breaker_refresh=False`
    trusts the breaker state the caller loaded a moment ago."""
    breaker.breaker_admit(endpoint=endpoint, tracer=tracer, refresh=breaker_refresh)
    try:
        with tracer.span(
            "model.call",
            **model_call_attributes(
                endpoint=endpoint,
                model=model,
                attempt=attempt,
                purpose=purpose,
                messages=len(messages),
            ),
            **{
                semconv.INPUT_MESSAGES: messages,
                semconv.TOOL_DEFINITIONS: tools,
                semconv.REQUEST_TEMPERATURE: temperature,
            },
        ) as span:
            reply = model_complete(
                endpoint=endpoint,
                model=model,
                messages=messages,
                tools=tools,
                temperature=temperature,
                on_text=on_text,
                should_stop=should_stop,
            )
            span.set(
                **{
                    "gen_ai.response.model": reply.model,
                    "gen_ai.usage.input_tokens": reply.input_tokens,
                    "gen_ai.usage.output_tokens": reply.output_tokens,
                    "gen_ai.response.finish_reasons": [reply.finish_reason],
                    "tool_calls": len(reply.tool_calls),
                    semconv.OUTPUT_MESSAGES: [
                        {
                            "role": "assistant",
                            "content": reply.content,
                            **({"tool_calls": reply.tool_calls} if reply.tool_calls else {}),
                        }
                    ],
                }
            )
    except Failure as failure:
        breaker.breaker_record_failure(endpoint=endpoint, failure=failure, tracer=tracer)
        raise
    breaker.breaker_record_success(endpoint=endpoint, tracer=tracer)
    return reply


def model_complete(
    *,
    endpoint: ModelEndpoint,
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    temperature: float | None,
    on_text: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ModelReply:
    """One streamed chat completion. Raises tracing.platform.failures.Failure on any error."""
    request: dict[str, Any] = {"model": model, "messages": messages}
    if tools:
        request["tools"] = tools
    if temperature is not None:
        request["temperature"] = temperature
    connection_release()
    try:
        return stream_reply(client_for(endpoint), request, on_text=on_text, should_stop=should_stop)
    except Exception as exc:
        raise classify_model_error(exc) from exc


def connection_release() -> None:
    """A pooled database connection goes back to the pool while this thread waits on the
    model, so a process driving many runs (agentops.worker.ConcurrentWorker) needs as many
    connections as runs writing at once, not as runs waiting. An unpooled one (the forking
    worker's, lent to one run at a time) is kept."""
    if connection.settings_dict["OPTIONS"].get("pool") and not connection.in_atomic_block:
        connection.close()


def stream_reply(
    client: openai.OpenAI,
    request: dict[str, Any],
    *,
    on_text: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ModelReply:
    """Stream one completion and gather its text, tool calls and usage."""
    sink = TokenSink(on_text) if on_text else None
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    reply = ModelReply(content="", model=request["model"])
    try:
        stream = client.chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
        with stream:
            for chunk in stream:
                if should_stop and should_stop():
                    break
                if chunk.usage:
                    reply.input_tokens = chunk.usage.prompt_tokens or 0
                    reply.output_tokens = chunk.usage.completion_tokens or 0
                if chunk.model:
                    reply.model = chunk.model
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        content.append(delta.content)
                        if sink:
                            sink.add(delta.content)
                    for call in delta.tool_calls or []:
                        slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        if call.id:
                            slot["id"] = call.id
                        if call.function and call.function.name:
                            slot["name"] += call.function.name
                        if call.function and call.function.arguments:
                            slot["arguments"] += call.function.arguments
                    if choice.finish_reason:
                        reply.finish_reason = choice.finish_reason
    finally:
        if sink:
            sink.flush()
    reply.content = "".join(content).replace("\x00", "\ufffd")  # Postgres can store no NUL
    reply.tool_calls = [
        {
            "id": slot["id"] or f"call_{index}",
            "type": "function",
            "function": {"name": slot["name"], "arguments": slot["arguments"]},
        }
        for index, slot in sorted(calls.items())
    ]
    return reply


def tool_specs(tools: list[Any]) -> list[dict[str, Any]]:
    """OpenAI `tools` parameter for ToolDefinition-like objects (name, description, parameters)."""
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters or {"type": "object", "properties": {}},
            },
        }
        for t in tools
    ]
