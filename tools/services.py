"""Writes of tool definitions: saving (each change a new kept version), who may call a tool,
enabling, syncing the Python tools registered in code, and trying a tool from its page.
Credentials are in tools/credentials.py, key rotation in tools/rotation.py, MCP servers in
tools/mcp_sync.py."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from tools.access import tool_access
from tools.models import ToolDefinition, ToolKind, ToolVersion
from tools.registry import get_python_tool, registered_tools
from tracing.platform.failures import Failure, FailureClass
from tracing.platform.logs import get_logger
from tracing.platform.types import Actor

logger = get_logger(__name__)

VERSIONED_FIELDS = [
    "name",
    "description",
    "kind",
    "parameters",
    "timeout_seconds",
    "retry_max_attempts",
    "retry_base_seconds",
    "retry_cap_seconds",
    "idempotent",
    "honours_idempotency_key",
    "idempotency_key_argument",
    "requires_approval",
    "enabled",
    "python_function",
    "http_config",
    "mcp_tool_name",
]


def tool_snapshot(tool: ToolDefinition) -> dict:
    snapshot = {field: getattr(tool, field) for field in VERSIONED_FIELDS}
    snapshot["fallback"] = tool.fallback.name if tool.fallback_id and tool.fallback else None
    snapshot["credential_id"] = tool.credential_id
    snapshot["mcp_server_id"] = tool.mcp_server_id
    return snapshot


def _check_fallback(tool: ToolDefinition) -> None:
    seen = {tool.pk} if tool.pk else set()
    current = tool.fallback
    while current is not None:
        if current.pk in seen:
            raise ValidationError({"fallback": "This fallback would make a loop of fallbacks."})
        seen.add(current.pk)
        current = current.fallback


def tool_idempotency_key_errors(tool: ToolDefinition) -> dict[str, list[str]]:
    """Why the tool's idempotency-key declaration cannot work, by field (empty when it can).
    HTTP tools send the key in `http_config["idempotency_header"]` (error key
    `idempotency_header`); Python and MCP tools in the argument `idempotency_key_argument`."""
    from tools.http_executor import DEFAULT_IDEMPOTENCY_HEADER, KEYLESS_METHODS

    if not tool.honours_idempotency_key:
        return {}
    if tool.kind == ToolKind.HTTP:
        config = tool.http_config or {}
        if not config.get("idempotency_header", DEFAULT_IDEMPOTENCY_HEADER):
            return {
                "idempotency_header": [
                    "Name the header the key is sent in: the tool is said to honour one."
                ]
            }
        if str(config.get("method") or "GET").upper() in KEYLESS_METHODS:
            return {
                "honours_idempotency_key": [
                    "A GET or HEAD request carries no idempotency key; such a request is safe "
                    "to repeat: tick idempotent instead."
                ]
            }
        return {}
    argument = tool.idempotency_key_argument
    if not argument:
        return {
            "idempotency_key_argument": [
                "Name the argument the key is passed in: the tool is said to honour one."
            ]
        }
    if tool.kind == ToolKind.PYTHON:
        registered = get_python_tool(tool.python_function or tool.name)
        if registered is not None and not registered.accepts(argument):
            return {
                "idempotency_key_argument": [
                    f"The function {registered.name} takes no argument named {argument}."
                ]
            }
    return {}


def _parameters_without(parameters: dict[str, Any], argument: str) -> dict[str, Any]:
    """The schema the model sees, without the argument the runtime fills in itself."""
    properties = parameters.get("properties")
    if not isinstance(properties, dict) or argument not in properties:
        return parameters
    stripped = {**parameters, "properties": {k: v for k, v in properties.items() if k != argument}}
    if isinstance(parameters.get("required"), list):
        stripped["required"] = [r for r in parameters["required"] if r != argument]
    return stripped


@transaction.atomic
def tool_save(*, tool: ToolDefinition) -> ToolDefinition:
    """Save a tool; a changed definition becomes a new version and the old one is kept."""
    _check_fallback(tool)
    if errors := tool_idempotency_key_errors(tool):
        raise ValidationError(errors)
    if tool.honours_idempotency_key and tool.kind != ToolKind.HTTP:
        tool.parameters = _parameters_without(tool.parameters or {}, tool.idempotency_key_argument)
    if not tool.pk:
        tool.version = 1
        tool.full_clean()
        tool.save()
    else:
        previous = ToolDefinition.objects.select_for_update().get(pk=tool.pk)
        if tool_snapshot(previous) == tool_snapshot(tool):
            return tool
        tool.version = previous.version + 1
        tool.full_clean()
        tool.save()
    ToolVersion.objects.create(tool=tool, version=tool.version, snapshot=tool_snapshot(tool))
    return tool


TOOL_CHANGEABLE = {
    "description",
    "enabled",
    "timeout_seconds",
    "retry_max_attempts",
    "retry_base_seconds",
    "retry_cap_seconds",
    "idempotent",
    "requires_approval",
    "honours_idempotency_key",
    "idempotency_key_argument",
}


def tool_update(*, tool: ToolDefinition, changes: dict[str, Any]) -> ToolDefinition:
    """Change a tool's description, switches, failure handling and idempotency key (the API's
    PATCH): saved as a new version when anything changed. `idempotency_header` is the HTTP
    tool's header ("" sends none). Refusals name the field."""
    from tools.http_executor import http_config_errors

    changes = dict(changes)
    if "idempotency_header" in changes:
        header = changes.pop("idempotency_header")
        if tool.kind != ToolKind.HTTP:
            raise ValidationError(
                {"idempotency_header": "Only HTTP tools send a header; use the argument."}
            )
        config = {**(tool.http_config or {}), "idempotency_header": header}
        if errors := http_config_errors(config, set()).get("idempotency_header"):
            raise ValidationError({"idempotency_header": errors})
        tool.http_config = config
    unknown = set(changes) - TOOL_CHANGEABLE
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "This field cannot be changed here."})
    for name, value in changes.items():
        setattr(tool, name, value)
    return tool_save(tool=tool)


def tool_callers_set(*, tool: ToolDefinition, caller_ids: list[int], actor: Actor) -> list[str]:
    """Who may call the tool, through the registered ToolAccess (tools/access.py)."""
    access = tool_access()
    if access is None:
        return []
    return access.callers_set(tool_id=tool.pk, caller_ids=caller_ids, actor=actor)


def tool_set_enabled(*, tool: ToolDefinition, enabled: bool) -> ToolDefinition:
    tool.enabled = enabled
    return tool_save(tool=tool)


def python_tools_sync() -> list[ToolDefinition]:
    """Create or update a ToolDefinition for every Python tool registered in code."""
    synced = []
    for name, registered in registered_tools().items():
        tool = ToolDefinition.objects.filter(name=name).first() or ToolDefinition(
            name=name, kind=ToolKind.PYTHON
        )
        tool.kind = ToolKind.PYTHON
        tool.description = registered.description
        tool.parameters = registered.parameters
        tool.python_function = name
        tool.idempotent = registered.idempotent
        if registered.idempotency_key_argument:
            tool.honours_idempotency_key = True
            tool.idempotency_key_argument = registered.idempotency_key_argument
        synced.append(tool_save(tool=tool))
    return synced


# -- trying a tool from its page -----------------------------------------------------------


@dataclass
class ToolTrial:
    ok: bool
    elapsed_ms: float
    content: str = ""
    status_code: int | None = None
    error_class: str = ""
    error_message: str = ""
    retry_after: float | None = None
    may_have_reached_server: bool = False
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    argument_errors: list[str] = field(default_factory=list)


def tool_try(*, tool: ToolDefinition, arguments: object) -> ToolTrial:
    """Run a tool once with sample arguments (checked against its schema first) and report
    the request, the response and the timing, secrets redacted."""
    from tools.executors import ToolContext, arguments_errors, tool_execute

    errors = arguments_errors(tool, arguments)
    if errors or not isinstance(arguments, dict):
        return ToolTrial(ok=False, elapsed_ms=0, argument_errors=errors)
    context = ToolContext(call_id=f"try-{uuid.uuid4().hex[:8]}", exchanges=[])
    started = time.monotonic()
    try:
        result = tool_execute(tool=tool, arguments=arguments, context=context)
    except Exception as exc:
        failure = (
            exc
            if isinstance(exc, Failure)
            else Failure(FailureClass.BUG, f"{type(exc).__name__}: {exc}")
        )
        if not isinstance(exc, Failure):
            logger.exception("tool.try.bug", tool=tool.name)
        elapsed = round((time.monotonic() - started) * 1000, 1)
        logger.info("tool.try.failed", tool=tool.name, error_class=str(failure.failure_class))
        return ToolTrial(
            ok=False,
            elapsed_ms=elapsed,
            error_class=str(failure.failure_class),
            error_message=str(failure),
            status_code=failure.status_code,
            retry_after=failure.retry_after,
            may_have_reached_server=failure.may_have_reached_server,
            exchanges=context.exchanges or [],
        )
    elapsed = round((time.monotonic() - started) * 1000, 1)
    return ToolTrial(
        ok=True,
        elapsed_ms=elapsed,
        content=result.content,
        status_code=result.status_code,
        exchanges=context.exchanges or [],
        may_have_reached_server=True,
    )
