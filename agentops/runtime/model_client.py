"""Model calls through the official `openai` client, streamed, with the client's own
hidden retries turned off (max_retries=0).

`model_call_guarded` is the one way to call a model: the loop, the handoff package, the
judge and the playground all go through it. It takes the candidates (endpoint, model) in
order and, for each, asks its circuit breaker before every attempt (an open breaker is never
retried: on to the next candidate at once), retries transient failures through
runtime/retry.py (each wait a `retry.wait` span), and falls back to the next candidate under
one rule (a `fallback` event with the reason). What is particular to a caller comes in as
hooks."""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from django.db import connection

from agentops.models import ModelEndpoint
from agentops.runtime import breaker
from agentops.runtime.breaker import BreakerOpen
from agentops.runtime.errors import classify_model_error
from agentops.runtime.retry import INLINE_WAIT_MAX, RetryPolicy, retry_call
from tracing import semconv
from tracing.emit import Tracer
from tracing.platform.failures import Failure, FailureClass

_clients: dict[tuple[int, str, str, float], openai.OpenAI] = {}

Candidate = tuple[ModelEndpoint, str]


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


@dataclass(frozen=True)
class GuardedReply:
    """What `model_call_guarded` got: the reply, and which candidate gave it at which attempt."""

    reply: ModelReply
    candidate: int
    attempt: int


@dataclass(frozen=True)
class RetryNotice:
    """A retry about to wait: told to the caller's `before_wait`, which may raise instead."""

    failure: Failure
    candidate: int
    attempt: int
    delay: float


def model_call_guarded(
    *,
    tracer: Tracer,
    candidates: Sequence[Candidate],
    policy: RetryPolicy,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    temperature: float | None,
    purpose: str,
    resume: tuple[int, int] = (0, 0),
    deadline: float | None = None,
    recover: Callable[[Failure, ModelEndpoint], bool] | None = None,
    before_attempt: Callable[[ModelEndpoint, int], None] | None = None,
    breaker_refresh: Callable[[ModelEndpoint], bool] | None = None,
    before_wait: Callable[[RetryNotice], None] | None = None,
    inline_max: float | None = INLINE_WAIT_MAX,
    on_text: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> GuardedReply:
    """The one guarded model call: each candidate in turn, from `resume` (candidate index,
    attempts already made there), each attempt admitted by the endpoint's breaker.

    On one candidate: a transient failure is tried again while `policy` has attempts left,
    after a `retry.wait`; `recover(failure, endpoint)` may fix the cause and ask for another
    attempt at once (it may change `messages` in place); an open breaker is never retried.
    `before_attempt(endpoint, attempt)` is told of each attempt and may raise to stop;
    `breaker_refresh(endpoint)` says whether to read the breaker's state again (default:
    always); `before_wait` is told of each retry and may raise to wait elsewhere; a wait over
    `inline_max` is not slept, nor one that would end past `deadline` (time.monotonic()).

    Any failure but a bug moves on to the next candidate, with a `fallback` event saying why,
    while time is left. When none is left: the last failure that reached an endpoint is
    raised, or, when every candidate's breaker kept it out, the BreakerOpen that reopens first.
    """
    first, attempts_made = resume
    failures: list[Failure] = []
    for index in range(first, len(candidates)):
        endpoint, model = candidates[index]
        if not _time_left(deadline):
            break
        if failures:
            last = failures[-1]
            tracer.event(
                "fallback",
                reason="breaker_open"
                if isinstance(last, BreakerOpen)
                else last.failure_class.value,
                to_endpoint=endpoint.name,
                **{"gen_ai.request.model": model},
            )
        try:
            reply, attempt = _candidate_call(
                tracer=tracer,
                index=index,
                endpoint=endpoint,
                model=model,
                policy=policy,
                attempts_made=attempts_made if index == first else 0,
                messages=messages,
                tools=tools,
                temperature=temperature,
                purpose=purpose,
                deadline=deadline,
                recover=recover,
                before_attempt=before_attempt,
                breaker_refresh=breaker_refresh,
                before_wait=before_wait,
                inline_max=inline_max,
                on_text=on_text,
                should_stop=should_stop,
            )
        except Failure as failure:
            if failure.failure_class == FailureClass.BUG:
                raise
            failures.append(failure)
            continue
        return GuardedReply(reply=reply, candidate=index, attempt=attempt)
    reached = [f for f in failures if not isinstance(f, BreakerOpen)]
    if reached:
        raise reached[-1]
    kept_out = [f for f in failures if isinstance(f, BreakerOpen)]
    if kept_out:
        raise min(kept_out, key=lambda f: f.reopens_in)
    raise Failure(FailureClass.TIMEOUT, f"no time left for the {purpose} model call")


def _time_left(deadline: float | None, wait: float = 0.0) -> bool:
    return deadline is None or time.monotonic() + wait < deadline


def _candidate_call(
    *,
    tracer: Tracer,
    index: int,
    endpoint: ModelEndpoint,
    model: str,
    policy: RetryPolicy,
    attempts_made: int,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    temperature: float | None,
    purpose: str,
    deadline: float | None,
    recover: Callable[[Failure, ModelEndpoint], bool] | None,
    before_attempt: Callable[[ModelEndpoint, int], None] | None,
    breaker_refresh: Callable[[ModelEndpoint], bool] | None,
    before_wait: Callable[[RetryNotice], None] | None,
    inline_max: float | None,
    on_text: Callable[[str], None] | None,
    should_stop: Callable[[], bool] | None,
) -> tuple[ModelReply, int]:
    """One candidate's attempts, through the retry owner. An open breaker ends them at once."""

    def attempt_once(attempt: int) -> tuple[ModelReply, int]:
        if before_attempt is not None:
            before_attempt(endpoint, attempt)
        reply = model_call(
            tracer=tracer,
            endpoint=endpoint,
            model=model,
            messages=messages,
            tools=tools,
            temperature=temperature,
            purpose=purpose,
            attempt=attempt,
            on_text=on_text,
            should_stop=should_stop,
            breaker_refresh=breaker_refresh(endpoint) if breaker_refresh is not None else True,
        )
        return reply, attempt

    def retryable(failure: Failure) -> bool:
        return failure.transient and not isinstance(failure, BreakerOpen)

    def recover_here(failure: Failure) -> bool:
        if recover is None or isinstance(failure, BreakerOpen):
            return False
        return recover(failure, endpoint)

    def told(failure: Failure, attempt: int, delay: float) -> None:
        if not _time_left(deadline, delay):
            raise failure
        if before_wait is not None:
            before_wait(RetryNotice(failure=failure, candidate=index, attempt=attempt, delay=delay))

    return retry_call(
        attempt_once,
        policy=policy,
        tracer=tracer,
        what=f"model {model}",
        attempts_made=attempts_made,
        retryable=retryable,
        recover=recover_here,
        before_wait=told,
        inline_max=inline_max,
    )


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
    trusts the breaker state the caller loaded a moment ago. Callers outside this module
    use `model_call_guarded`."""
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
    """Stream one completion and gather its text, tool calls and usage.

    Sent through the client's own `post`, not `chat.completions.create`: the request is plain
    JSON already and the chunks are read as JSON, so the client's walk of every request
    through its typed parameters and its typed chunk objects (~5 ms a call, more than the
    rest of a step; bench/step_overhead.py) are skipped. Its HTTP, its errors (the same
    exceptions, classified by runtime/errors.py) and its reading of the event stream are the
    same. A chunk of an unexpected shape contributes nothing rather than failing the call."""
    sink = TokenSink(on_text) if on_text else None
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    reply = ModelReply(content="", model=request["model"])
    body = {**request, "stream": True, "stream_options": {"include_usage": True}}
    try:
        stream = client.post(
            "/chat/completions",
            body=body,
            cast_to=object,
            stream=True,
            stream_cls=openai.Stream[object],
        )
        with stream:
            for chunk in stream:
                if should_stop and should_stop():
                    break
                if not isinstance(chunk, dict):
                    continue
                usage = chunk.get("usage")
                if isinstance(usage, dict):
                    reply.input_tokens = _count(usage.get("prompt_tokens"))
                    reply.output_tokens = _count(usage.get("completion_tokens"))
                if chunk.get("model") and isinstance(chunk["model"], str):
                    reply.model = chunk["model"]
                for choice in _dicts(chunk.get("choices")):
                    delta = choice.get("delta")
                    delta = delta if isinstance(delta, dict) else {}
                    text = delta.get("content")
                    if text and isinstance(text, str):
                        content.append(text)
                        if sink:
                            sink.add(text)
                    for call in _dicts(delta.get("tool_calls")):
                        index = call.get("index")
                        slot = calls.setdefault(
                            index if isinstance(index, int) else 0,
                            {"id": "", "name": "", "arguments": ""},
                        )
                        if call.get("id") and isinstance(call["id"], str):
                            slot["id"] = call["id"]
                        function = call.get("function")
                        if isinstance(function, dict):
                            if function.get("name") and isinstance(function["name"], str):
                                slot["name"] += function["name"]
                            arguments = function.get("arguments")
                            if arguments and isinstance(arguments, str):
                                slot["arguments"] += arguments
                    if choice.get("finish_reason") and isinstance(choice["finish_reason"], str):
                        reply.finish_reason = choice["finish_reason"]
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


def _dicts(value: object) -> list[dict[str, Any]]:
    """The objects of a JSON list (none if it is not one)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


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
