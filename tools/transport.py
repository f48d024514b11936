"""One HTTP exchange for tools: egress-guarded, redirects followed by hand (each hop checked,
credentials dropped when the origin changes), a whole-call deadline, a response size limit
enforced while the body streams in, and every failure classified."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tracing.emit import REDACTED
from tracing.platform.egress import Resolver, guarded_client
from tracing.platform.failures import Failure, FailureClass, retry_after_from, transport_failure

USER_AGENT = "AgentOps-Tool/1"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
EXCERPT_CHARS = 4000
_SENSITIVE_HEADER_RE = re.compile(r"(authorization|api[_-]?key|token|secret|password|cookie)", re.I)


class Redactor:
    """Replaces known secret values (and the values of secret-looking headers) with [REDACTED]."""

    def __init__(
        self, secrets: list[str] | None = None, header_names: list[str] | None = None
    ) -> None:
        self.secrets = sorted(
            {s for s in (secrets or []) if s and len(s) >= 4}, key=len, reverse=True
        )
        self.header_names = {h.lower() for h in (header_names or []) if h}

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        return value

    def value(self, value: object) -> object:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        shown = {}
        for name, value in dict(headers).items():
            if name.lower() in self.header_names or _SENSITIVE_HEADER_RE.search(name):
                shown[name] = REDACTED
            else:
                shown[name] = self.text(value)
        return shown


@dataclass
class HttpOutcome:
    status_code: int
    headers: httpx.Headers
    body: bytes
    url: str
    elapsed_ms: float
    exchanges: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def classify_transport_error(exc: Exception, where: str) -> Failure:
    """A Failure for an exception raised while talking to `where` (a host name)."""
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return Failure(
            FailureClass.TOOL_ERROR, f"Bad URL for {where}: {exc}", may_have_reached_server=False
        )
    failure = transport_failure(exc, where)
    if failure is not None:
        return failure
    return Failure(FailureClass.TOOL_ERROR, f"{type(exc).__name__} talking to {where}: {exc}")


def http_send(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    content: bytes | None,
    timeout: float,
    max_bytes: int,
    follow_redirects: bool = True,
    max_redirects: int = 5,
    credential_headers: frozenset[str] = frozenset(),
    redactor: Redactor | None = None,
    record: bool = False,
    resolver: Resolver | None = None,
) -> HttpOutcome:
    """Send one request (following redirects) and read the body up to `max_bytes`.

    Raises a classified Failure; never retries. `credential_headers` are removed from a
    redirect that leaves the first URL's origin. With `record`, each hop is described
    (secrets redacted) in `HttpOutcome.exchanges` and on the Failure as `exchanges`.
    """
    redactor = redactor or Redactor()
    started = time.monotonic()
    deadline = started + timeout
    exchanges: list[dict[str, Any]] = []
    current = httpx.URL(url)
    first_origin = _origin(current)
    headers = {"User-Agent": USER_AGENT, **headers}
    answered = False
    try:
        with guarded_client(timeout=timeout, resolver=resolver) as client:
            for hop in range(max_redirects + 1):
                if current.scheme not in ("http", "https"):
                    raise Failure(
                        FailureClass.TOOL_ERROR,
                        f"Tools only speak http and https, not {current.scheme!r}.",
                        may_have_reached_server=hop > 0,
                    )
                if _origin(current) != first_origin:
                    headers = {
                        k: v for k, v in headers.items() if k.lower() not in credential_headers
                    }
                hop_started = time.monotonic()
                entry: dict[str, Any] = {}
                if record:
                    entry["request"] = {
                        "method": method,
                        "url": redactor.text(str(current)),
                        "headers": redactor.headers(headers),
                        "body": redactor.text(content.decode("utf-8", "replace")[:EXCERPT_CHARS])
                        if content
                        else "",
                    }
                    exchanges.append(entry)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Failure(
                        FailureClass.TIMEOUT,
                        f"{current.host} did not answer in time.",
                        may_have_reached_server=hop > 0,
                    )
                request = client.build_request(
                    method,
                    current,
                    headers=headers,
                    content=content,
                    timeout=httpx.Timeout(remaining),
                )
                response = client.send(request, stream=True)
                answered = True
                try:
                    is_redirect = (
                        response.status_code in REDIRECT_STATUSES and "location" in response.headers
                    )
                    body = (
                        b""
                        if (is_redirect and follow_redirects)
                        else _read_limited(response, max_bytes=max_bytes, deadline=deadline)
                    )
                finally:
                    response.close()
                if record:
                    entry["response"] = {
                        "status": response.status_code,
                        "headers": redactor.headers(response.headers),
                        "body": redactor.text(body[:EXCERPT_CHARS].decode("utf-8", "replace")),
                    }
                    entry["elapsed_ms"] = round((time.monotonic() - hop_started) * 1000, 1)
                if not (is_redirect and follow_redirects):
                    return HttpOutcome(
                        status_code=response.status_code,
                        headers=response.headers,
                        body=body,
                        url=str(current),
                        elapsed_ms=round((time.monotonic() - started) * 1000, 1),
                        exchanges=exchanges,
                    )
                current = current.join(response.headers["location"])
                if response.status_code == 303 or (
                    response.status_code in (301, 302) and method == "POST"
                ):
                    method, content = "GET", None
                    headers = {
                        k: v
                        for k, v in headers.items()
                        if k.lower() not in ("content-type", "content-length")
                    }
            raise Failure(
                FailureClass.BAD_RESPONSE,
                f"More than {max_redirects} redirects from {httpx.URL(url).host}.",
            )
    except Exception as exc:
        failure = classify_transport_error(exc, current.host or url)
        if answered and not failure.may_have_reached_server:
            # A later hop failed (refused, unreachable): an earlier one did reach its server.
            failure = Failure(
                failure.failure_class,
                str(failure),
                may_have_reached_server=True,
                retry_after=failure.retry_after,
                status_code=failure.status_code,
            )
        failure.exchanges = exchanges  # type: ignore[attr-defined]
        if failure is exc:
            raise
        raise failure from exc


def _read_limited(response: httpx.Response, *, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise Failure(
            FailureClass.BAD_RESPONSE,
            f"The response is {declared} bytes, over this tool's limit of {max_bytes} bytes.",
            status_code=response.status_code,
        )
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise Failure(
                FailureClass.BAD_RESPONSE,
                f"The response is over this tool's limit of {max_bytes} bytes.",
                status_code=response.status_code,
            )
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise Failure(
                FailureClass.TIMEOUT, f"{response.url.host} did not finish its answer in time."
            )
    return b"".join(chunks)


def failure_for_status(outcome: HttpOutcome, *, redactor: Redactor, where: str) -> Failure | None:
    """The Failure an HTTP status means (None for success)."""
    status = outcome.status_code
    if status < 400 and status >= 200:
        return None
    excerpt = redactor.text(outcome.text[:300]).strip()
    detail = f"HTTP {status} from {where}" + (f": {excerpt}" if excerpt else "")
    if status == 429:
        return Failure(
            FailureClass.RATE_LIMIT,
            detail,
            status_code=status,
            retry_after=retry_after_from(outcome.headers),
        )
    if status == 408:
        return Failure(FailureClass.TIMEOUT, detail, status_code=status)
    if status >= 500:
        return Failure(
            FailureClass.SERVER_ERROR,
            detail,
            status_code=status,
            retry_after=retry_after_from(outcome.headers),
        )
    if status >= 400:
        return Failure(FailureClass.TOOL_ERROR, detail, status_code=status)
    return Failure(FailureClass.BAD_RESPONSE, detail, status_code=status)
