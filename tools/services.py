from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from crypto.secrets import SecretUnreadable
from tools.access import tool_access
from tools.credentials import basic_value, credential_auth_headers, credential_secret_values
from tools.models import (
    Credential,
    CredentialKind,
    McpServer,
    ToolDefinition,
    ToolKind,
    ToolVersion,
)
from tools.registry import registered_tools
from tools.transport import Redactor, failure_for_status, http_send
from tracing.egress import Resolver
from tracing.failures import Failure, FailureClass
from tracing.logs import get_logger

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
    "requires_approval",
    "enabled",
    "python_function",
    "http_config",
    "mcp_tool_name",
]
TOKEN_REFRESH_MARGIN = timedelta(seconds=30)
TOKEN_REQUEST_TIMEOUT = 15.0


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


@transaction.atomic
def tool_save(*, tool: ToolDefinition) -> ToolDefinition:
    """Save a tool; a changed definition becomes a new version and the old one is kept."""
    _check_fallback(tool)
    if tool.pk is None:
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


def tool_callers_set(*, tool: ToolDefinition, caller_ids: list[int]) -> None:
    """Who may call the tool, through the registered ToolAccess (tools/access.py)."""
    access = tool_access()
    if access is not None:
        access.callers_set(tool_id=tool.pk, caller_ids=caller_ids)


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


def tool_try(*, tool: ToolDefinition, arguments: Any) -> ToolTrial:
    """Run a tool once with sample arguments (checked against its schema first) and report
    the request, the response and the timing, secrets redacted."""
    from tools.executors import ToolContext, arguments_errors, tool_execute

    errors = arguments_errors(tool, arguments)
    if errors:
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


# -- credentials ---------------------------------------------------------------------------


@transaction.atomic
def credential_save(*, credential: Credential, secret: str | None = None) -> Credential:
    """Save a credential. `secret` (write-only) replaces the stored one when given; a change
    to an OAuth2 client drops its cached access token."""
    changed_client = False
    if credential.pk:
        previous = Credential.objects.get(pk=credential.pk)
        changed_client = (
            previous.token_url,
            previous.client_id,
            previous.scope,
            previous.kind,
        ) != (credential.token_url, credential.client_id, credential.scope, credential.kind)
    if secret:
        credential.set_secret(secret)
        changed_client = True
    if changed_client:
        credential.set_access_token("")
        credential.token_expires_at = None
    credential.full_clean()
    errors = credential_config_errors(credential)
    if errors:
        raise ValidationError(errors)
    credential.save()
    return credential


def credential_config_errors(credential: Credential) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not credential.secret_ciphertext:
        errors["secret"] = "Enter the secret (it is stored encrypted and never shown again)."  # noqa: S105
    if credential.kind == CredentialKind.BASIC and not credential.username:
        errors["username"] = "Basic auth needs a username."
    if credential.kind == CredentialKind.OAUTH2:
        if not credential.token_url:
            errors["token_url"] = "OAuth2 client credentials need the token URL."  # noqa: S105
        if not credential.client_id:
            errors["client_id"] = "OAuth2 client credentials need the client id."
    return errors


def credential_record_use(*, credential: Credential) -> None:
    now = timezone.now()
    Credential.objects.filter(pk=credential.pk).update(last_used_at=now)
    credential.last_used_at = now


def credential_record_failure(*, credential: Credential, message: str) -> None:
    message = Redactor(credential_secret_values(credential)).text(message)[:1000]
    now = timezone.now()
    Credential.objects.filter(pk=credential.pk).update(last_failure_at=now, last_failure=message)
    credential.last_failure_at, credential.last_failure = now, message


def _token_fresh(credential: Credential) -> bool:
    if not credential.access_token_ciphertext:
        return False
    expires = credential.token_expires_at
    return expires is None or expires - TOKEN_REFRESH_MARGIN > timezone.now()


def credential_access_token(
    *,
    credential: Credential,
    force: bool = False,
    stale_token: str = "",
    resolver: Resolver | None = None,
) -> str:
    """A usable OAuth2 access token: the stored one unless it is expired, expiring within 30 s,
    or is `stale_token` (rejected by a server); then a new one from the token endpoint.

    The row is locked while fetching, so concurrent callers fetch one token, not many.
    """
    if not force and not stale_token and _token_fresh(credential):
        return credential.access_token
    try:
        with transaction.atomic():
            locked = Credential.objects.select_for_update().get(pk=credential.pk)
            current = locked.access_token if locked.access_token_ciphertext else ""
            if (
                current
                and _token_fresh(locked)
                and ((stale_token and current != stale_token) or (not stale_token and not force))
            ):
                token, expires = current, locked.token_expires_at
            else:
                token, expires = _fetch_token(locked, resolver=resolver)
                locked.set_access_token(token)
                locked.token_expires_at = expires
                Credential.objects.filter(pk=locked.pk).update(
                    access_token_ciphertext=locked.access_token_ciphertext, token_expires_at=expires
                )
    except Failure as failure:
        credential_record_failure(credential=credential, message=str(failure))
        raise
    credential.access_token_ciphertext = locked.access_token_ciphertext
    credential.token_expires_at = expires
    return token


def _fetch_token(credential: Credential, *, resolver: Resolver | None) -> tuple[str, Any]:
    secret = credential.secret
    redactor = Redactor([secret, basic_value(credential.client_id, secret)])
    form = {"grant_type": "client_credentials"}
    if credential.scope:
        form["scope"] = credential.scope
    try:
        outcome = http_send(
            method="POST",
            url=credential.token_url,
            headers={
                "Authorization": f"Basic {basic_value(credential.client_id, secret)}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            content=urlencode(form).encode(),
            timeout=TOKEN_REQUEST_TIMEOUT,
            max_bytes=65536,
            follow_redirects=False,
            redactor=redactor,
            resolver=resolver,
        )
        failure = failure_for_status(outcome, redactor=redactor, where="the token endpoint")
        if failure is not None:
            raise failure
        try:
            payload = json.loads(outcome.body)
            token = str(payload["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise Failure(
                FailureClass.BAD_RESPONSE, "The token endpoint answered without an access_token."
            ) from exc
        if not token:
            raise Failure(
                FailureClass.BAD_RESPONSE, "The token endpoint answered with an empty access_token."
            )
        expires_in = payload.get("expires_in")
        expires = (
            timezone.now() + timedelta(seconds=float(expires_in))
            if isinstance(expires_in, int | float | str)
            and str(expires_in).replace(".", "", 1).isdigit()
            else None
        )
    except Failure as failure:
        message = f"OAuth2 token request failed: {redactor.text(str(failure))}"
        raise Failure(
            failure.failure_class,
            message,
            retry_after=failure.retry_after,
            may_have_reached_server=False,
            status_code=failure.status_code,
        ) from failure
    logger.info("credential.token.fetched", credential=credential.name)
    return token, expires


@dataclass
class CredentialCheck:
    ok: bool
    message: str
    elapsed_ms: float
    status_code: int | None = None


def credential_test(*, credential: Credential, resolver: Resolver | None = None) -> CredentialCheck:
    """Check a credential: fetch a token (OAuth2) and GET its test URL, if it has one."""
    started = time.monotonic()
    redactor = Redactor()
    steps = []
    try:
        redactor = Redactor(credential_secret_values(credential))
        headers = credential_auth_headers(
            credential=credential,
            force_refresh=credential.kind == CredentialKind.OAUTH2,
            resolver=resolver,
        )
        redactor = Redactor(credential_secret_values(credential))
        if credential.kind == CredentialKind.OAUTH2:
            steps.append("the token endpoint issued a token")
        status = None
        if credential.test_url:
            outcome = http_send(
                method="GET",
                url=credential.test_url,
                headers=headers,
                content=None,
                timeout=TOKEN_REQUEST_TIMEOUT,
                max_bytes=65536,
                redactor=redactor,
                credential_headers=frozenset(h.lower() for h in headers),
                resolver=resolver,
            )
            status = outcome.status_code
            failure = failure_for_status(outcome, redactor=redactor, where="the test URL")
            if failure is not None:
                raise failure
            steps.append(f"the test URL answered HTTP {status}")
        if not steps:
            return CredentialCheck(
                ok=True,
                elapsed_ms=_ms(started),
                message=("Stored and decryptable. Add a test URL to check it against a server."),
            )
        credential_record_use(credential=credential)
        return CredentialCheck(
            ok=True,
            message="OK: " + "; ".join(steps) + ".",
            elapsed_ms=_ms(started),
            status_code=status,
        )
    except SecretUnreadable as exc:
        return CredentialCheck(ok=False, message=str(exc), elapsed_ms=_ms(started))
    except Failure as failure:
        message = redactor.text(str(failure))
        credential_record_failure(credential=credential, message=message)
        return CredentialCheck(
            ok=False, message=message, elapsed_ms=_ms(started), status_code=failure.status_code
        )


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


# -- MCP servers ---------------------------------------------------------------------------


def mcp_server_save(*, server: McpServer) -> McpServer:
    server.full_clean()
    if server.transport == "http" and not server.url:
        raise ValidationError({"url": "A streamable HTTP server needs its URL."})
    if server.transport == "stdio" and not server.command:
        raise ValidationError({"command": "A stdio server needs the command that starts it."})
    server.save()
    return server


@dataclass
class McpSyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def mcp_server_sync(*, server: McpServer) -> McpSyncReport:
    """Import the server's tools as tool definitions. New ones start disabled: an admin
    enables each one. Tools the server no longer lists are disabled."""
    from tools.mcp_client import mcp_list_tools, mcp_tool_definition_name

    listed = mcp_list_tools(server=server)
    report = McpSyncReport()
    seen = set()
    for remote in listed:
        seen.add(remote.name)
        tool = ToolDefinition.objects.filter(mcp_server=server, mcp_tool_name=remote.name).first()
        is_new = tool is None
        if tool is None:
            name = mcp_tool_definition_name(server.name, remote.name)
            if ToolDefinition.objects.filter(name=name).exists():
                report.skipped.append(f"{remote.name}: a tool named {name} already exists")
                continue
            tool = ToolDefinition(
                name=name,
                kind=ToolKind.MCP,
                mcp_server=server,
                mcp_tool_name=remote.name,
                enabled=False,
                idempotent=remote.idempotent,
            )
        before = tool.version
        tool.description = (remote.description or remote.name)[:4000]
        tool.parameters = remote.parameters
        try:
            with transaction.atomic():
                tool = tool_save(tool=tool)
        except ValidationError as exc:
            report.skipped.append(f"{remote.name}: {'; '.join(exc.messages)}")
            continue
        if is_new:
            report.created.append(tool.name)
        elif tool.version != before:
            report.updated.append(tool.name)
        else:
            report.unchanged.append(tool.name)
    for gone in ToolDefinition.objects.filter(mcp_server=server).exclude(mcp_tool_name__in=seen):
        if gone.enabled:
            tool_set_enabled(tool=gone, enabled=False)
        report.missing.append(gone.name)
    McpServer.objects.filter(pk=server.pk).update(last_synced_at=timezone.now())
    return report
