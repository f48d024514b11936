"""The failure taxonomy every app classifies its errors into.

An exception carries its class as `failure_class` (see `Failure`); anything that does
not is a bug: never retried blindly, surfaced with its traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

import httpx
import httpx2


class FailureClass(StrEnum):
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    SERVER_ERROR = "server_error"
    AUTH = "auth"
    INVALID_REQUEST = "invalid_request"
    CONTEXT_OVERFLOW = "context_overflow"
    TOOL_ERROR = "tool_error"
    BAD_RESPONSE = "bad_response"
    CANCELLED = "cancelled"
    LIMIT = "limit"  # a guard stopped the run: max_steps, a repeated identical tool call
    GUARDRAIL = "guardrail"  # a guardrail blocked the input, the answer or a tool call
    BUG = "bug"


TRANSIENT = frozenset(
    {
        FailureClass.RATE_LIMIT,
        FailureClass.TIMEOUT,
        FailureClass.CONNECTION,
        FailureClass.SERVER_ERROR,
    }
)


class Failure(Exception):
    """An error with a known class. `retry_after` (seconds) comes from the other side."""

    def __init__(
        self,
        failure_class: FailureClass,
        message: str,
        *,
        retry_after: float | None = None,
        may_have_reached_server: bool = True,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.failure_class = failure_class
        self.retry_after = retry_after
        self.may_have_reached_server = may_have_reached_server
        self.status_code = status_code

    @property
    def transient(self) -> bool:
        return self.failure_class in TRANSIENT


class Interruption(Exception):
    """Not an error: the run stops here on purpose — it waits (backoff, approval), is handed
    to a human, or another worker holds it now. A span it passes through ends `ok` with
    `outcome` saying why, never as a failure."""

    outcome = "interrupted"


def failure_class_of(exc: BaseException) -> str:
    value = getattr(exc, "failure_class", None)
    return str(value) if value else FailureClass.BUG.value


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def retry_after_from(headers: Mapping[str, str] | None) -> float | None:
    """The wait a response asks for: `retry-after-ms` (OpenAI's) before `retry-after`."""
    if not headers:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            return None
    return retry_after_seconds(headers.get("retry-after"))


_CONNECT_TIMEOUTS = (
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx2.ConnectTimeout,
    httpx2.PoolTimeout,
)


def transport_failure(exc: BaseException, where: str) -> Failure | None:
    """The Failure an httpx (or httpx2, the openai client's) transport error raised talking to
    `where` means, or None when `exc` is not one. Model calls and tool calls both classify
    timeouts and lost connections here; `may_have_reached_server` tells a tool whether a
    retry is safe."""
    if isinstance(exc, _CONNECT_TIMEOUTS):
        return Failure(
            FailureClass.TIMEOUT, f"Timed out connecting to {where}.", may_have_reached_server=False
        )
    if isinstance(exc, httpx.TimeoutException | httpx2.TimeoutException):
        return Failure(FailureClass.TIMEOUT, f"No answer in time from {where}.")
    if isinstance(exc, httpx.ConnectError | httpx2.ConnectError):
        return Failure(
            FailureClass.CONNECTION,
            f"Cannot connect to {where}: {exc}",
            may_have_reached_server=False,
        )
    if isinstance(exc, httpx.DecodingError | httpx2.DecodingError):
        return Failure(FailureClass.BAD_RESPONSE, f"Cannot decode the body {where} sent: {exc}")
    if isinstance(exc, httpx.TransportError | httpx2.TransportError):
        return Failure(
            FailureClass.CONNECTION,
            f"The connection to {where} failed: {exc or type(exc).__name__}",
        )
    return None
