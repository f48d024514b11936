"""Fixed log-scale latency histograms and percentile estimates from them.

Every rollup row counts durations into the same buckets, so histograms of any set of rows
add up element-wise and percentiles of a window need no raw spans. Bucket i holds
durations in (LATENCY_BOUNDS_MS[i-1], LATENCY_BOUNDS_MS[i]]; the last bucket holds what is
above the largest bound. Neighbouring bounds differ by 2**0.25 (about 19 %), which is the
worst-case error of a percentile read from them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracing.models import MetricRollup

_FACTOR = 2**0.25
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(
    round(_FACTOR**i, 3) for i in range(0, 89)
)  # 1 ms .. 70 min
HIST_SIZE = len(LATENCY_BOUNDS_MS) + 1


def bucket_index(duration_ms: float) -> int:
    return bisect.bisect_left(LATENCY_BOUNDS_MS, max(duration_ms, 0.0))


def hist_new() -> list[int]:
    return [0] * HIST_SIZE


def hist_add(target: list[int], other: Sequence[int]) -> list[int]:
    if len(target) < HIST_SIZE:
        target.extend([0] * (HIST_SIZE - len(target)))
    for i, n in enumerate(other[:HIST_SIZE]):
        target[i] += n
    return target


def percentile(hist: Sequence[int], q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile (None when empty).

    The true value v satisfies v <= result < v * 2**0.25 (for v >= 1 ms).
    """
    total = sum(hist)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return LATENCY_BOUNDS_MS[min(i, len(LATENCY_BOUNDS_MS) - 1)]
    return LATENCY_BOUNDS_MS[-1]


# The summed columns of a MetricRollup besides cost, latency_sum_ms and latency_hist.
COUNTERS = (
    "count",
    "errors",
    "succeeded",
    "handed_off",
    "cancelled",
    "started",
    "retries",
    "fallbacks",
    "handoffs",
    "tokens_in",
    "tokens_out",
)


def sums_add(target: MetricRollup | Totals, other: MetricRollup | Totals) -> None:
    """Add `other`'s sums to `target`'s: either may be a MetricRollup row or a Totals."""
    for name in COUNTERS:
        setattr(target, name, getattr(target, name) + getattr(other, name))
    target.cost = Decimal(target.cost) + Decimal(other.cost)
    target.latency_sum_ms += other.latency_sum_ms
    target.latency_hist = hist_add(list(target.latency_hist or []), other.latency_hist or [])


@dataclass
class Totals:
    """The sums a MetricRollup row holds, in memory: while spans are rolled up, and when
    rows are added up for a page."""

    count: int = 0
    errors: int = 0
    succeeded: int = 0
    handed_off: int = 0
    cancelled: int = 0
    started: int = 0
    retries: int = 0
    fallbacks: int = 0
    handoffs: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal(0)
    latency_sum_ms: float = 0.0
    latency_hist: list[int] = field(default_factory=hist_new)

    def observe(self, duration_ms: float) -> None:
        self.latency_sum_ms += duration_ms
        self.latency_hist[bucket_index(duration_ms)] += 1

    def add(self, other: MetricRollup | Totals) -> None:
        sums_add(self, other)
