"""The failure taxonomy every app classifies its errors into.

An exception carries its class as `failure_class` (see `Failure`); anything that does
not is a bug: never retried blindly, surfaced with its traceback.
"""

from __future__ import annotations

from enum import StrEnum


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
