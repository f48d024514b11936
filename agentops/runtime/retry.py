"""The one retry owner: exponential backoff with full jitter, honouring Retry-After.

Model calls (runtime/loop.py) and tool calls (runtime/tooling.py) both retry through
`RetryPolicy.delay`, and every wait is a `retry.wait` span, so each attempt shows up in
the trace. A wait longer than INLINE_WAIT_MAX does not sleep on the worker: the caller
raises WaitRequired and the run is woken later by the scheduler.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from tracing.emit import Tracer

INLINE_WAIT_MAX = 3.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base: float
    cap: float

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        backoff = random.uniform(0, min(self.cap, self.base * (2 ** (attempt - 1))))
        return max(backoff, retry_after) if retry_after is not None else backoff


def wait_inline(tracer: Tracer, *, delay: float, attempt: int, error_class: str, what: str) -> None:
    with tracer.span(
        "retry.wait",
        attempt=attempt,
        delay_s=round(delay, 3),
        **{"error.type": error_class},
        target=what,
    ):
        time.sleep(delay)
