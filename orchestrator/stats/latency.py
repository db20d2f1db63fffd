"""Latency histograms over fixed buckets: they add up across minutes and replicas, percentiles do not.

Each replica counts its requests per bucket; a query sums the counts and reads percentiles
from the sum, interpolating linearly inside the bucket where the rank falls (as
Prometheus's ``histogram_quantile`` does). The estimate always lies in the bucket that
holds the true value, so its error is at most that bucket's width: about half the value
with these bounds (1, 1.5, 2, 3, 5, 7 per decade).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence

BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7,
    10, 15, 20, 30, 50, 70,
    100, 150, 200, 300, 500, 700,
    1000, 1500, 2000, 3000, 5000, 7000,
    10000, 15000, 20000, 30000, 60000,
)  # fmt: skip
"""Upper bounds (inclusive); a histogram has one more count, for everything above the last."""
SIZE = len(BUCKETS_MS) + 1


def empty() -> list[int]:
    return [0] * SIZE


def bucket_of(ms: float) -> int:
    """Index of the bucket that counts a request of ``ms`` milliseconds."""
    return bisect_left(BUCKETS_MS, ms)


def merged(histograms: Iterable[Sequence[int]]) -> list[int]:
    total = empty()
    for histogram in histograms:
        if len(histogram) != SIZE:
            raise ValueError(f"a histogram has {len(histogram)} buckets, not {SIZE}")
        for i, count in enumerate(histogram):
            total[i] += count
    return total


def percentile(histogram: Sequence[int], q: float, max_ms: float) -> float | None:
    """The ``q`` quantile (0 < q ≤ 1) in ms; None without requests.

    ``max_ms``, the largest latency counted, bounds the estimate and stands for the upper
    bound of the last, open bucket.
    """
    total = sum(histogram)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(histogram):
        if count and seen + count >= rank:
            lower = BUCKETS_MS[i - 1] if i > 0 else 0.0
            upper = BUCKETS_MS[i] if i < len(BUCKETS_MS) else max(max_ms, lower)
            estimate = lower + (upper - lower) * (rank - seen) / count
            return min(round(estimate, 2), max_ms)
        seen += count
    return max_ms  # not reached: the counts add up to total
