"""HTTP tools: a request built from templates and the call's arguments, sent once.

`http_config` keys: method, url, query {name: template}, headers {name: template},
body_format ("json" | "form" | "text" | ""), body (template), response {mode: "body" |
"json" | "status", json_path, max_chars, include_status}, max_response_bytes,
follow_redirects, max_redirects, idempotency_header.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from tools.credentials import (
    credential_auth_headers,
    credential_header_names,
    credential_secret_values,
)
from tools.models import CredentialKind, ToolDefinition
from tools.templating import (
    TemplateError,
    json_path_select,
    parse_json_path,
    placeholders,
    render_header,
    render_json,
    render_query,
    render_text,
    render_url_encoded,
)
from tools.transport import HttpOutcome, Redactor, failure_for_status, http_send
from tracing.platform.egress import Resolver
from tracing.platform.failures import Failure, FailureClass
from tracing.platform.types import JsonValue

if TYPE_CHECKING:
    from tools.executors import ToolContext, ToolResult
    from tools.models import Credential

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
BODY_FORMATS = {
    "json": "application/json",
    "form": "application/x-www-form-urlencoded",
    "text": "text/plain; charset=utf-8",
}
RESPONSE_MODES = ("body", "json", "status")
DEFAULT_MAX_RESPONSE_BYTES = 1_000_000
MAX_RESPONSE_BYTES_LIMIT = 50_000_000
DEFAULT_MAX_CHARS = 8000
DEFAULT_IDEMPOTENCY_HEADER = "Idempotency-Key"
HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
# Requests that carry no idempotency key: safe by definition.
KEYLESS_METHODS = ("GET", "HEAD")


@dataclass
class BuiltRequest:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None


def build_http_request(config: dict[str, Any], arguments: dict[str, Any]) -> BuiltRequest:
    """Render the request from the templates. Raises TemplateError."""
    method = str(config.get("method") or "GET").upper()
    url = render_url_encoded(str(config.get("url") or ""), arguments)
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise TemplateError(f"The URL must be an http(s) URL with a host, not {url!r}.")
    query = render_query(dict(config.get("query") or {}), arguments)
    if query:
        parsed = parsed.copy_merge_params(list[tuple[str, Any]](query))
    headers = {
        str(k): render_header(str(v), arguments) for k, v in (config.get("headers") or {}).items()
    }
    content = None
    body_format = config.get("body_format") or ""
    body = str(config.get("body") or "")
    if body_format and body and method not in ("GET", "HEAD"):
        if body_format == "json":
            content = render_json(body, arguments).encode()
        elif body_format == "form":
            content = render_url_encoded(body, arguments).encode()
        else:
            content = render_text(body, arguments).encode()
        headers.setdefault("Content-Type", BODY_FORMATS[body_format])
    return BuiltRequest(method=method, url=str(parsed), headers=headers, content=content)


def http_config_errors(config: dict[str, Any], parameter_names: set[str]) -> dict[str, list[str]]:
    """What is wrong with an HTTP tool's configuration, by config key (empty when fine)."""
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    if str(config.get("method") or "GET").upper() not in METHODS:
        add("method", f"Use one of {', '.join(METHODS)}.")
    url = str(config.get("url") or "")
    if not url:
        add("url", "Enter the URL template.")
    elif not url.startswith(("http://", "https://")):
        add(
            "url",
            "The URL must start with http:// or https:// (a placeholder may not choose the scheme).",
        )
    else:
        host_part = url.split("://", 1)[1].split("/", 1)[0]
        if "{{" in host_part:
            add(
                "url",
                "A placeholder may not stand in the host: the model must not choose where requests go.",
            )
    templates: dict[str, list[str]] = {"url": [url], "body": [str(config.get("body") or "")]}
    for key in ("query", "headers"):
        value = config.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            add(key, "Give a JSON object of names to template strings.")
            continue
        templates[key] = list(value.values())
        if key == "headers" and any(any(c in k for c in "\r\n:") for k in value):
            add(key, "Header names may not contain colons or line breaks.")
    for key, values in templates.items():
        for template in values:
            for name in placeholders(template):
                if name.split(".")[0] not in parameter_names:
                    add(key, f"The placeholder {{{{{name}}}}} is not one of the tool's parameters.")
    body_format = config.get("body_format") or ""
    if body_format and body_format not in BODY_FORMATS:
        add("body_format", f"Use one of {', '.join(BODY_FORMATS)} or leave it empty.")
    if body_format == "json" and config.get("body"):
        sample = {name: "x" for name in parameter_names}
        try:
            render_json(str(config["body"]), sample)
        except TemplateError as exc:
            add("body", str(exc))
    response = config.get("response") or {}
    if response.get("mode", "body") not in RESPONSE_MODES:
        add("response", f"The response mode is one of {', '.join(RESPONSE_MODES)}.")
    if response.get("json_path"):
        try:
            parse_json_path(str(response["json_path"]))
        except TemplateError as exc:
            add("json_path", str(exc))
    max_bytes = config.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
    if not isinstance(max_bytes, int) or not 1 <= max_bytes <= MAX_RESPONSE_BYTES_LIMIT:
        add(
            "max_response_bytes",
            f"Give a whole number of bytes from 1 to {MAX_RESPONSE_BYTES_LIMIT}.",
        )
    header = config.get("idempotency_header", DEFAULT_IDEMPOTENCY_HEADER)
    if not isinstance(header, str) or (header and not HEADER_NAME_RE.fullmatch(header)):
        add(
            "idempotency_header",
            "A header name: letters, digits and hyphens (empty: send no idempotency key).",
        )
    return errors


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"… [truncated {len(text) - limit} chars]"


def map_response(
    config: dict[str, Any], status: int, body: bytes, where: str
) -> tuple[str, JsonValue]:
    """The tool's result (text for the model, structured data) from a successful response."""
    response = config.get("response") or {}
    mode = response.get("mode") or "body"
    limit = int(response.get("max_chars") or DEFAULT_MAX_CHARS)
    data: JsonValue
    if mode == "status":
        content, data = f"HTTP {status}", {"status": status}
    elif mode == "json":
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError as exc:
            raise Failure(
                FailureClass.BAD_RESPONSE,
                f"{where} did not answer with JSON: {exc}",
                status_code=status,
            ) from exc
        path = str(response.get("json_path") or "").strip()
        if path and path != "$":
            try:
                data = json_path_select(data, path)
            except KeyError as exc:
                raise Failure(
                    FailureClass.BAD_RESPONSE,
                    f"The answer from {where} has nothing at {path}.",
                    status_code=status,
                ) from exc
        content = _truncate(
            data if isinstance(data, str) else json.dumps(data, ensure_ascii=False), limit
        )
    else:
        data = None
        content = _truncate(body.decode("utf-8", errors="replace"), limit)
    if response.get("include_status") and mode != "status":
        content = f"HTTP {status}\n{content}"
    return content, data


class HttpExecutor:
    def __init__(self, resolver: Resolver | None = None) -> None:
        self.resolver = resolver

    def execute(
        self, tool: ToolDefinition, arguments: dict[str, Any], context: ToolContext
    ) -> ToolResult:
        from tools.credentials import credential_record_failure, credential_record_use
        from tools.executors import ToolResult

        config = tool.http_config or {}
        try:
            request = build_http_request(config, arguments)
        except (TemplateError, httpx.InvalidURL) as exc:
            raise Failure(
                FailureClass.TOOL_ERROR,
                f"Cannot build the request: {exc}",
                may_have_reached_server=False,
            ) from exc
        credential = tool.credential
        record = context.exchanges is not None
        headers = dict(request.headers)
        idempotency_header = config.get("idempotency_header", DEFAULT_IDEMPOTENCY_HEADER)
        if idempotency_header and request.method not in KEYLESS_METHODS and context.run_id:
            headers[idempotency_header] = context.idempotency_key
        auth: dict[str, str] = {}
        if credential is not None:
            _protect(context, credential)
            auth = credential_auth_headers(credential=credential, resolver=self.resolver)
            _protect(context, credential)
        where = httpx.URL(request.url).host
        outcome = self._send(
            request, {**headers, **auth}, tool, config, context, credential, record
        )
        if (
            outcome.status_code == 401
            and credential is not None
            and credential.kind == CredentialKind.OAUTH2
        ):
            stale = auth.get("Authorization", "").removeprefix("Bearer ")
            try:
                auth = credential_auth_headers(
                    credential=credential, stale_token=stale, resolver=self.resolver
                )
            except Failure as failure:
                raise Failure(
                    failure.failure_class,
                    str(failure),
                    may_have_reached_server=True,
                    retry_after=failure.retry_after,
                    status_code=401,
                ) from failure
            _protect(context, credential)
            if context.exchanges is not None:
                context.exchanges.append(
                    {"note": "HTTP 401: fetched a new OAuth2 token and sent the request again."}
                )
            outcome = self._send(
                request, {**headers, **auth}, tool, config, context, credential, record
            )
        redactor = Redactor(credential_secret_values(credential))
        status_failure = failure_for_status(outcome, redactor=redactor, where=where)
        if status_failure is not None:
            if credential is not None and outcome.status_code in (401, 403):
                credential_record_failure(credential=credential, message=str(status_failure))
            raise status_failure
        if credential is not None:
            credential_record_use(credential=credential)
        content, data = map_response(config, outcome.status_code, outcome.body, where)
        return ToolResult(content=content, data=data, status_code=outcome.status_code)

    def _send(
        self,
        request: BuiltRequest,
        headers: dict[str, str],
        tool: ToolDefinition,
        config: dict[str, Any],
        context: ToolContext,
        credential: Credential | None,
        record: bool,
    ) -> HttpOutcome:
        redactor = Redactor(
            credential_secret_values(credential), credential_header_names(credential)
        )
        try:
            outcome = http_send(
                method=request.method,
                url=request.url,
                headers=headers,
                content=request.content,
                timeout=float(tool.timeout_seconds),
                max_bytes=int(config.get("max_response_bytes") or DEFAULT_MAX_RESPONSE_BYTES),
                follow_redirects=bool(config.get("follow_redirects", True)),
                max_redirects=int(config.get("max_redirects") or 5),
                credential_headers=frozenset(
                    h.lower() for h in credential_header_names(credential)
                ),
                redactor=redactor,
                record=record,
                resolver=self.resolver,
            )
        except Failure as failure:
            if context.exchanges is not None:
                context.exchanges.extend(getattr(failure, "exchanges", []))
            raise
        if context.exchanges is not None:
            context.exchanges.extend(outcome.exchanges)
        return outcome


def _protect(context: ToolContext, credential: Credential | None) -> None:
    tracer = context.tracer
    if tracer is not None:
        for value in credential_secret_values(credential):
            tracer.add_secret(value)
