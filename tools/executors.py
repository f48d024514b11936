"""One executor interface for every kind of tool. The runtime calls `tool_execute`.

An executor makes exactly one attempt: it returns a `ToolResult` or raises a
`tracing.platform.failures.Failure` saying what failed (timeout, connection, rate limit with
Retry-After, server error, client error, bad response) and whether the request may
have reached the server. Retries and fallbacks belong to the runtime's retry owner.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from jsonschema import Draft202012Validator

from tools.deadline import ToolTimeout, call_with_deadline
from tools.models import ToolDefinition, ToolKind
from tools.registry import get_python_tool
from tools.schemas import Unresolvable, schema_validator
from tracing.emit import REDACTED, Tracer
from tracing.platform.crypto import SecretUnreadable
from tracing.platform.failures import Failure, FailureClass

MAX_RESULT_CHARS = 8000


@dataclass
class ToolContext:
    """What a tool may know about the call. Never carries credentials."""

    call_id: str = ""
    run_id: uuid.UUID | None = None
    step: int | None = None
    agent_id: int | None = None
    agent_slug: str = ""
    session_id: uuid.UUID | None = None
    user_key: str = ""
    tracer: Tracer | None = None
    services: dict[str, Any] = field(default_factory=dict)
    # When a list, executors append what they sent and received (secrets redacted): "Try it".
    exchanges: list[dict[str, Any]] | None = None

    @property
    def idempotency_key(self) -> str:
        """The same on every attempt of a call, in every job of its run (ToolCall's key). A
        call outside a run (a try from the tool's page) is a call of its own."""
        if self.run_id is None:
            return self.call_id
        return f"{self.run_id}:{self.step}:{self.call_id}"


@dataclass
class ToolResult:
    content: str
    data: object = None
    status_code: int | None = None
    # Set by a tool that ends the run's turn (e.g. handoff_to_human).
    control: dict[str, Any] | None = None


class ToolExecutor(Protocol):
    def execute(
        self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext
    ) -> ToolResult: ...


def arguments_errors(tool: ToolDefinition, arguments: object) -> list[str]:
    """Why these arguments do not fit the tool's schema (empty when they do)."""
    if not isinstance(arguments, dict):
        return ["arguments must be a JSON object"]
    # 2020-12 whatever `$schema` says: the draft tool schemas are checked against when saved.
    validator = schema_validator(tool.parameters or {"type": "object"}, draft=Draft202012Validator)
    try:
        found = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    except Unresolvable as exc:
        return [f"the tool's schema has a reference that cannot be resolved: {exc.ref}"]
    except RecursionError:  # a recursive schema stored before they were refused at entry
        return ["the tool's schema refers to itself without end, so no arguments can be checked"]
    errors = []
    for error in found:
        where = "/".join(str(p) for p in error.path) or "(arguments)"
        errors.append(f"{where}: {error.message}")
    return errors


def as_text(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\x00", "\ufffd")  # Postgres can store no NUL character
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"… [truncated {len(text) - MAX_RESULT_CHARS} chars]"
    return text


class PythonExecutor:
    def execute(
        self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext
    ) -> ToolResult:
        registered = get_python_tool(tool.python_function or tool.name)
        if registered is None:
            raise Failure(
                FailureClass.TOOL_ERROR,
                f"Python tool {tool.name!r} is not registered in code.",
                may_have_reached_server=False,
            )
        kwargs = dict(arguments)
        if registered.takes_context:
            # Off the main thread the function runs on a helper thread that may outlive a
            # timeout: it gets no tracer, whose open spans belong to the caller's thread.
            on_main = threading.current_thread() is threading.main_thread()
            kwargs["context"] = context if on_main else replace(context, tracer=None)
        try:
            value = call_with_deadline(registered.func, kwargs, seconds=float(tool.timeout_seconds))
        except ToolTimeout as exc:
            raise Failure(
                FailureClass.TIMEOUT,
                f"The tool {tool.name} did not finish within {tool.timeout_seconds:g} s.",
            ) from exc
        except Failure:
            raise
        except Exception as exc:
            raise Failure(FailureClass.TOOL_ERROR, f"{type(exc).__name__}: {exc}") from exc
        if isinstance(value, ToolResult):
            return value
        return ToolResult(content=as_text(value), data=value)


_executors: dict[str, ToolExecutor] = {ToolKind.PYTHON: PythonExecutor()}


def register_executor(kind: str, executor: ToolExecutor) -> None:
    _executors[kind] = executor


def tool_secret_values(tool: ToolDefinition) -> list[str]:
    """The secrets a call of this tool may use (its credential's, its MCP server's)."""
    from tools.credentials import credential_secret_values

    values = credential_secret_values(tool.credential) if tool.credential_id else []
    server = tool.mcp_server if tool.mcp_server_id else None
    if server is not None and server.credential_id:
        values += credential_secret_values(server.credential)
    return values


def _scrub_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def _scrub(value: object, secrets: list[str]) -> object:
    if isinstance(value, str):
        return _scrub_text(value, secrets)
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    return value


def tool_execute(
    *, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext
) -> ToolResult:
    """Run one attempt of a tool call. Arguments that fail the schema never reach the tool;
    credential values never appear in the result or in the failure's message."""
    executor = _executors.get(tool.kind)
    if executor is None:
        raise Failure(
            FailureClass.TOOL_ERROR,
            f"No executor for tools of kind {tool.kind!r}.",
            may_have_reached_server=False,
        )
    errors = arguments_errors(tool, arguments)
    if errors:
        raise Failure(
            FailureClass.INVALID_REQUEST,
            f"Arguments for {tool.name} do not fit its schema: " + "; ".join(errors),
            may_have_reached_server=False,
        )
    if tool.honours_idempotency_key and tool.kind != ToolKind.HTTP:
        # Filled in last: whatever the model sent under that name, the key is the call's own.
        arguments = {**arguments, tool.idempotency_key_argument: context.idempotency_key}
    try:
        secrets = _secrets_of(tool, context)
        result = executor.execute(tool, arguments, context)
    except SecretUnreadable as exc:
        raise Failure(
            FailureClass.AUTH,
            f"The credential of {tool.name} cannot be used: {exc}",
            may_have_reached_server=False,
        ) from exc
    except Failure as failure:
        secrets = _secrets_of(tool, context)
        failure.args = tuple(_scrub(a, secrets) for a in failure.args)
        raise
    secrets = _secrets_of(tool, context)
    result.content = _scrub_text(result.content, secrets)
    result.data = _scrub(result.data, secrets)
    return result


def _secrets_of(tool: ToolDefinition, context: ToolContext) -> list[str]:
    """Read fresh (a call may have fetched a new token) and hand them to the tracer."""
    secrets = sorted(set(tool_secret_values(tool)), key=len, reverse=True)
    secrets = [s for s in secrets if len(s) >= 4]
    if context.tracer is not None:
        for secret in secrets:
            context.tracer.add_secret(secret)
    return secrets
