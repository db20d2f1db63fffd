"""Per-minute statistics of two replicas written to every backend and read back summed.

Counts must add up exactly; percentiles, read from the summed histograms, must land within
one bucket of the true percentile of all the requests of both replicas.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from orchestrator.db import Gallery
from orchestrator.stats import latency
from orchestrator.stats.minutes import MinuteWriter, RequestMinutes, summary

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
ROUTES = ("POST /v1/recognize", "GET /v1/people")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def true_percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile: the smallest value with at least q of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def test_two_replicas_sum_exactly_and_percentiles_come_from_the_merged_histograms(
    gallery: Gallery,
) -> None:
    rng = random.Random(7)
    clock = Clock()
    replicas = {name: RequestMinutes(clock) for name in ("replica-a", "replica-b")}
    writers = [MinuteWriter(m, gallery.add_request_minutes, name) for name, m in replicas.items()]
    sent: dict[tuple[int, str], list[tuple[int, float, int, int]]] = defaultdict(list)
    for minute in range(3):
        for second in range(0, 60, 2):
            clock.now = START + minute * 60 + second
            for counts in replicas.values():
                route = rng.choice(ROUTES)
                # Latency spread over three decades, so the percentiles land in different buckets.
                ms = round(10 ** rng.uniform(0.3, 3.3), 3)
                status = rng.choice([200, 200, 200, 400, 503])
                faces, hits = (rng.randint(0, 3), rng.randint(0, 1)) if route == ROUTES[0] else (0, 0)
                counts.observe(route, status, ms, faces=faces, cache_hits=hits)
                sent[(minute, route)].append((status, ms, faces, hits))
        if minute == 1:  # minutes 0 and 1 are over; minute 2 waits for the close
            clock.now = START + 120
            for writer in writers:
                assert await writer.flush()
            partial = gallery.request_minutes(datetime.fromtimestamp(START, UTC))
            assert {(row.minute, row.replicas) for row in partial} == {
                (datetime.fromtimestamp(START + m * 60, UTC), 2) for m in (0, 1)
            }
    for writer in writers:
        await writer.close()

    rows = [summary(row) for row in gallery.request_minutes(datetime.fromtimestamp(START, UTC))]
    assert [(row.minute, row.route) for row in rows] == sorted(
        (datetime.fromtimestamp(START + minute * 60, UTC), route) for minute, route in sent
    )
    for row in rows:
        minute = int((row.minute.timestamp() - START) // 60)
        requests = sent[(minute, row.route)]
        values = [ms for _, ms, _, _ in requests]
        assert (row.requests, row.errors, row.server_errors, row.faces, row.cache_hits) == (
            len(requests),
            sum(status >= 400 for status, *_ in requests),
            sum(status >= 500 for status, *_ in requests),
            sum(faces for *_, faces, _ in requests),
            sum(hits for *_, hits in requests),
        )
        assert row.replicas == 2 and row.max_ms == max(values)
        for q, estimate in ((0.5, row.p50_ms), (0.95, row.p95_ms), (0.99, row.p99_ms)):
            assert estimate is not None
            true = true_percentile(values, q)
            assert abs(latency.bucket_of(estimate) - latency.bucket_of(true)) <= 1, (row.route, q, true)


def test_a_minute_written_twice_counts_once_and_windows_bound_the_rows(gallery: Gallery) -> None:
    clock = Clock()
    minutes = RequestMinutes(clock)
    for second in (0, 61, 122):
        clock.now = START + second
        minutes.observe("GET /health", 200, 3.0)
    clock.now = START + 180
    due, rows = minutes.take("replica-a")
    assert len(due) == len(rows) == 3
    gallery.add_request_minutes(rows)
    gallery.add_request_minutes(minutes.take("replica-a", everything=True)[1])  # nothing new
    minutes.put_back(due)  # as after a write whose commit was lost on the way back
    gallery.add_request_minutes(minutes.take("replica-a")[1])
    t0 = datetime.fromtimestamp(START, UTC)
    assert [row.requests for row in gallery.request_minutes(t0)] == [1, 1, 1]
    assert len(gallery.request_minutes(t0 + timedelta(minutes=1))) == 2
    assert len(gallery.request_minutes(t0, until=t0 + timedelta(minutes=1))) == 1
    assert gallery.prune_request_minutes(t0 + timedelta(minutes=2)) == 2
    assert [row.minute for row in gallery.request_minutes(t0)] == [t0 + timedelta(minutes=2)]
