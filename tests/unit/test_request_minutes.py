"""Latency histograms, this replica's minutes in memory, and the tally of a request's recognitions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.stats import latency
from orchestrator.stats.minutes import RECENT_MINUTES, RequestMinutes
from orchestrator.stats.tally import count_recognition, tallying

pytestmark = pytest.mark.unit

START = 1_780_000_020.0  # a minute's start


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def histogram_of(values: list[float]) -> list[int]:
    counts = latency.empty()
    for value in values:
        counts[latency.bucket_of(value)] += 1
    return counts


latencies = st.lists(st.floats(0.01, 120_000, allow_nan=False), min_size=1, max_size=300)


@given(latencies, latencies, st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_a_percentile_of_merged_histograms_lies_in_the_bucket_of_the_true_one(
    first: list[float], second: list[float], q: float
) -> None:
    """Two replicas' histograms summed give what one histogram of all the requests gives."""
    values = sorted(first + second)
    merged = latency.merged([histogram_of(first), histogram_of(second)])
    assert merged == histogram_of(values)
    estimate = latency.percentile(merged, q, max(values))
    true = values[max(0, math.ceil(q * len(values)) - 1)]
    assert estimate is not None and estimate <= max(values)
    assert latency.bucket_of(estimate) in (latency.bucket_of(true), latency.bucket_of(true) - 1)


def test_a_percentile_interpolates_in_its_bucket_and_the_open_bucket_ends_at_the_max() -> None:
    assert latency.percentile(latency.empty(), 0.5, 0.0) is None
    assert latency.percentile(histogram_of([12.0] * 4), 0.5, 12.0) == 12.0  # capped by the max
    assert latency.percentile(histogram_of([11.0, 14.0]), 0.5, 14.0) == 12.5  # half into (10, 15]
    assert latency.percentile(histogram_of([70_000.0, 90_000.0]), 1.0, 90_000.0) == 90_000.0
    with pytest.raises(ValueError, match="buckets"):
        latency.merged([[1, 2]])


def test_minutes_are_taken_once_over_and_the_current_one_on_close() -> None:
    clock = Clock()
    minutes = RequestMinutes(clock)
    minutes.observe("GET /v1/people", 200, 5.0)
    minutes.observe("GET /v1/people", 404, 7.0)
    clock.now += 60
    minutes.observe("POST /v1/recognize", 200, 40.0, faces=2, cache_hits=1)
    due, rows = minutes.take("r1")
    assert [(row.route, row.requests, row.errors, row.max_ms) for row in rows] == [
        ("GET /v1/people", 2, 1, 7.0)
    ]
    assert rows[0].minute.timestamp() == START and rows[0].replica == "r1"
    assert minutes.take("r1") == ([], [])
    minutes.put_back(due)
    assert len(minutes.take("r1")[1]) == 1
    _, last = minutes.take("r1", everything=True)
    assert [(row.route, row.faces, row.cache_hits) for row in last] == [("POST /v1/recognize", 2, 1)]


def test_a_clock_set_back_never_reopens_a_minute_taken() -> None:
    clock = Clock()
    minutes = RequestMinutes(clock)
    clock.now += 61
    minutes.observe("GET /health", 200, 1.0)
    clock.now -= 60  # NTP steps the clock back into the previous minute
    minutes.observe("GET /health", 200, 1.0)
    clock.now += 120
    _, rows = minutes.take("r1")
    assert [(row.minute.timestamp(), row.requests) for row in rows] == [(START + 60, 2)]


def test_recent_covers_five_minutes_of_this_replica() -> None:
    clock = Clock()
    minutes = RequestMinutes(clock)
    for minute in range(8):
        clock.now = START + minute * 60 + 30
        minutes.observe("GET /v1/people", 200 if minute % 2 else 500, 10.0 * (minute + 1))
    minutes.take("r1")  # written: the older minutes may go, the recent ones stay
    seconds, routes = minutes.recent()
    assert seconds == (RECENT_MINUTES - 1) * 60 + 30
    [people] = routes
    assert (people.route, people.requests, people.errors) == ("GET /v1/people", 5, 2)  # minutes 4, 6
    assert (people.rate_per_s, people.error_rate) == (round(5 / seconds, 4), 0.4)
    assert people.p50_ms is not None and people.p99_ms is not None
    assert 50 < people.p50_ms <= people.p99_ms <= 80  # of 40, 50, 60, 70, 80 ms


def test_recent_counts_from_the_start_of_a_young_process() -> None:
    clock = Clock()
    clock.now += 50
    minutes = RequestMinutes(clock)
    clock.now += 10
    minutes.observe("GET /health", 200, 1.0)
    assert minutes.recent()[0] == 10


def test_recognitions_count_into_the_tally_of_their_request_only() -> None:
    count_recognition(3, True)  # outside a request: nowhere, and no error
    with tallying() as outer:
        count_recognition(2, False)
        with tallying() as inner:
            count_recognition(1, True)
        count_recognition(1, True)
    assert (outer.faces, outer.cache_hits) == (3, 1)
    assert (inner.faces, inner.cache_hits) == (1, 1)
