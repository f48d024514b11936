"""The one retry owner: exponential backoff with full jitter, honouring Retry-After.

Model calls (runtime/model_client.py's `model_call_guarded`, for every caller) and tool
calls (runtime/tooling.py) both retry through `retry_call`, and every wait is a
`retry.wait` span, so each attempt shows up in the trace. A wait longer than
INLINE_WAIT_MAX does not sleep on the worker: the caller's `before_wait` raises
WaitRequired and the run is woken later by the scheduler, or the failure is raised.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tracing.emit import Tracer
from tracing.platform.failures import Failure

INLINE_WAIT_MAX = 3.0

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base: float
    cap: float

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        backoff = random.uniform(0, min(self.cap, self.base * (2 ** (attempt - 1))))
        return max(backoff, retry_after) if retry_after is not None else backoff


# Model calls made for no agent (a judge's verdict, a playground run); an agent's calls use
# its own policy. Waits over INLINE_WAIT_MAX are not slept: the failure is shown instead.
MODEL_RETRY = RetryPolicy(max_attempts=3, base=0.5, cap=3.0)


def is_transient(failure: Failure) -> bool:
    return failure.transient


def retry_call(
    attempt_once: Callable[[int], T],
    *,
    policy: RetryPolicy,
    tracer: Tracer,
    what: str,
    attempts_made: int = 0,
    retryable: Callable[[Failure], bool] = is_transient,
    recover: Callable[[Failure], bool] | None = None,
    before_wait: Callable[[Failure, int, float], None] | None = None,
    inline_max: float | None = INLINE_WAIT_MAX,
) -> T:
    """`attempt_once(attempt)` until it returns, numbering attempts on from `attempts_made`.

    After a Failure: `recover(failure)` may fix the cause and ask for another attempt at
    once (a refreshed credential); otherwise a `retryable` failure is tried again while
    attempts are left, after `policy.delay` seconds slept in a `retry.wait` span.
    `before_wait(failure, attempt, delay)` is told of each retry first and may raise (to
    wait without holding the worker); a delay over `inline_max` is not slept and the
    failure is raised. Any other failure, or the last, is raised as it came.
    """
    attempt = attempts_made
    while True:
        attempt += 1
        try:
            return attempt_once(attempt)
        except Failure as failure:
            if recover is not None and recover(failure):
                continue
            if not retryable(failure) or attempt >= policy.max_attempts:
                raise
            delay = policy.delay(attempt, failure.retry_after)
            if before_wait is not None:
                before_wait(failure, attempt, delay)
            if inline_max is not None and delay > inline_max:
                raise
            wait_inline(
                tracer,
                delay=delay,
                attempt=attempt,
                error_class=failure.failure_class.value,
                what=what,
            )


def wait_inline(tracer: Tracer, *, delay: float, attempt: int, error_class: str, what: str) -> None:
    with tracer.span(
        "retry.wait",
        attempt=attempt,
        delay_s=round(delay, 3),
        **{"error.type": error_class},
        target=what,
    ):
        time.sleep(delay)
