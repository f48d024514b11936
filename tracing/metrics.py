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
from collections.abc import Iterable, Sequence

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


def hist_sum(hists: Iterable[Sequence[int]]) -> list[int]:
    total = hist_new()
    for h in hists:
        if h:
            hist_add(total, h)
    return total


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
