"""Classify whatever a model call raised into a FailureClass (tracing.platform.failures)."""

from __future__ import annotations

import openai

from tracing.platform.failures import (
    Failure,
    FailureClass,
    Interruption,
    retry_after_from,
    transport_failure,
)

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "too many tokens",
)


class WaitRequired(Interruption):
    """The run must wait (backoff, approval) without holding a worker."""

    outcome = "wait"

    def __init__(
        self,
        delay: float | None,
        reason: str,
        *,
        approval_call: int | None = None,
        child_run: object = None,
    ) -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason
        self.approval_call = approval_call  # the ToolCall an operator must decide
        self.child_run = child_run  # the Run (another agent's) whose answer it waits for


class LeaseLost(Interruption):
    """Another worker took the run over, or it was cancelled: stop writing at once."""

    outcome = "lease_lost"


class HandoffRequired(Interruption):
    """The run hands the conversation to a human. Without a `failure_class` the handoff was
    asked for (the user or the model wanted a human); with one, the run could not go on."""

    outcome = "handoff"

    def __init__(
        self, reason: str, *, team: str = "", priority: int = 2, failure_class: str = ""
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.team = team
        self.priority = priority
        self.failure_class = failure_class


def _model_endpoint(exc: BaseException) -> str:
    url = getattr(getattr(exc, "request", None), "url", None)
    return f"the model endpoint {getattr(url, 'host', '')}".strip()


def classify_model_error(exc: BaseException) -> Failure:
    if isinstance(exc, Failure):
        return exc
    # The openai client raises APITimeoutError / APIConnectionError from the httpx error.
    cause = exc.__cause__ if isinstance(exc, openai.APIConnectionError) else None
    transport = transport_failure(cause, _model_endpoint(exc)) if cause is not None else None
    if transport is not None:
        return transport
    if isinstance(exc, openai.APIConnectionError):  # with no httpx error underneath
        timed_out = isinstance(exc, openai.APITimeoutError)
        return Failure(
            FailureClass.TIMEOUT if timed_out else FailureClass.CONNECTION,
            f"Cannot reach the model endpoint: {exc}",
            may_have_reached_server=timed_out,
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = f"HTTP {status}: {exc.message}"
        body_text = str(getattr(exc, "body", "") or "") + " " + str(exc.message)
        if status == 429:
            return Failure(
                FailureClass.RATE_LIMIT,
                message,
                retry_after=retry_after_from(exc.response.headers),
                status_code=status,
            )
        if status in (401, 403):
            return Failure(FailureClass.AUTH, message, status_code=status)
        if any(marker in body_text.lower() for marker in _CONTEXT_MARKERS):
            return Failure(FailureClass.CONTEXT_OVERFLOW, message, status_code=status)
        if status >= 500 or status == 408:
            return Failure(
                FailureClass.SERVER_ERROR,
                message,
                retry_after=retry_after_from(exc.response.headers),
                status_code=status,
            )
        return Failure(FailureClass.INVALID_REQUEST, message, status_code=status)
    if isinstance(exc, openai.APIError):
        return Failure(
            FailureClass.BAD_RESPONSE, f"The model endpoint sent something unusable: {exc}"
        )
    return Failure(FailureClass.BUG, f"{type(exc).__name__}: {exc}")
