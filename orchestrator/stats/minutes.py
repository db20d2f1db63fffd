"""This replica's requests per minute and route, in memory, written to the database once each minute ends.

Every replica writes its own rows (``request_minute``, one per replica, minute and route)
and ``GET /v1/stats`` sums them. A minute is written once it is over, by
:class:`MinuteWriter` every ``flush_s``; the current one too when the process stops. The
last few minutes stay in memory for ``/health/detailed`` (this replica's recent traffic).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from orchestrator.db.tables import NAME_MAX, RequestMinute, RequestMinuteSum
from orchestrator.stats import latency

log = logging.getLogger(__name__)

RECENT_MINUTES = 5
"""The window of :meth:`RequestMinutes.recent`: the current minute and the four before it."""
MAX_UNWRITTEN = 24 * 60
"""Minutes kept while the database cannot take them (a day); older ones are dropped."""


@dataclass
class Counts:
    requests: int = 0
    errors: int = 0
    server_errors: int = 0
    faces: int = 0
    cache_hits: int = 0
    latency: list[int] = field(default_factory=latency.empty)
    max_ms: float = 0.0

    def observe(self, status: int, ms: float, faces: int, cache_hits: int) -> None:
        self.requests += 1
        self.errors += status >= 400
        self.server_errors += status >= 500
        self.faces += faces
        self.cache_hits += cache_hits
        self.latency[latency.bucket_of(ms)] += 1
        self.max_ms = max(self.max_ms, ms)

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.server_errors += other.server_errors
        self.faces += other.faces
        self.cache_hits += other.cache_hits
        self.latency = latency.merged([self.latency, other.latency])
        self.max_ms = max(self.max_ms, other.max_ms)


class RouteRecent(BaseModel):
    """One route's last minutes on this replica."""

    route: str = Field(description='method and route template: "POST /v1/recognize"')
    requests: int
    rate_per_s: float
    errors: int = Field(description="answers with a status of 400 or more")
    error_rate: float = Field(description="errors / requests")
    p50_ms: float | None
    p99_ms: float | None


class MinuteSummary(BaseModel):
    """One route's minute over every replica, as ``GET /v1/stats`` answers it."""

    minute: datetime = Field(description="the minute's start, UTC")
    route: str = Field(description='method and route template: "POST /v1/recognize"')
    requests: int
    errors: int = Field(description="answers with a status of 400 or more")
    server_errors: int = Field(description="answers with a status of 500 or more")
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float
    faces: int = Field(description="faces found by the recognitions among these requests")
    cache_hits: int = Field(description="recognitions answered from the cache")
    replicas: int = Field(description="replicas that served this route this minute")


def summary(row: RequestMinuteSum) -> MinuteSummary:
    """The percentiles of the summed histogram (each within its bucket of the true value)."""
    return MinuteSummary(
        **row.model_dump(exclude={"latency"}),
        p50_ms=latency.percentile(row.latency, 0.5, row.max_ms),
        p95_ms=latency.percentile(row.latency, 0.95, row.max_ms),
        p99_ms=latency.percentile(row.latency, 0.99, row.max_ms),
    )


def minute_start(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


class RequestMinutes:
    """Counts per (minute, route); only touched from the event loop, so no lock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.started = clock()
        self._minutes: dict[int, dict[str, Counts]] = {}
        self._unwritten: set[int] = set()
        self._newest = 0
        self.dropped_minutes = 0

    def observe(self, route: str, status: int, ms: float, *, faces: int = 0, cache_hits: int = 0) -> None:
        # A clock set back never reopens a minute that may already be written.
        minute = max(int(self._clock() // 60), self._newest)
        if minute != self._newest:
            self._newest = minute
            self._forget_old()
        routes = self._minutes.setdefault(minute, {})
        key = route[:NAME_MAX]
        counts = routes.get(key)
        if counts is None:
            counts = routes[key] = Counts()
        counts.observe(status, ms, faces, cache_hits)
        self._unwritten.add(minute)

    def _forget_old(self) -> None:
        for minute in [m for m in self._minutes if m <= self._newest - RECENT_MINUTES]:
            if minute not in self._unwritten:
                del self._minutes[minute]
        while len(self._unwritten) > MAX_UNWRITTEN:
            oldest = min(self._unwritten)
            self._unwritten.discard(oldest)
            self._minutes.pop(oldest, None)
            self.dropped_minutes += 1
            if self.dropped_minutes % 60 == 1:
                log.warning("request statistics: %d minutes dropped; the database lags", self.dropped_minutes)

    def take(self, replica: str, *, everything: bool = False) -> tuple[list[int], list[RequestMinute]]:
        """The rows of the minutes that are over and not yet taken (``everything``: the current too).

        They count as written; :meth:`put_back` returns them when the write failed.
        """
        current = int(self._clock() // 60)
        due = sorted(m for m in self._unwritten if everything or m < current)
        self._unwritten.difference_update(due)
        rows = [
            RequestMinute(
                minute=minute_start(minute),
                route=route,
                replica=replica,
                requests=counts.requests,
                errors=counts.errors,
                server_errors=counts.server_errors,
                faces=counts.faces,
                cache_hits=counts.cache_hits,
                latency=list(counts.latency),
                max_ms=round(counts.max_ms, 3),
            )
            for minute in due
            for route, counts in sorted(self._minutes.get(minute, {}).items())
        ]
        return due, rows

    def put_back(self, minutes: Sequence[int]) -> None:
        self._unwritten.update(m for m in minutes if m in self._minutes)

    def totals(self, minutes: int = RECENT_MINUTES) -> tuple[float, dict[str, Counts]]:
        """Per route, the counts of the current minute and the ``minutes - 1`` before it (at
        most :data:`RECENT_MINUTES` in all), with the seconds they cover."""
        now = self._clock()
        first = int(now // 60) - (min(minutes, RECENT_MINUTES) - 1)
        seconds = max(1.0, min(now - first * 60, now - self.started))
        totals: dict[str, Counts] = {}
        for minute, routes in self._minutes.items():
            if minute >= first:
                for route, counts in routes.items():
                    totals.setdefault(route, Counts()).add(counts)
        return seconds, totals

    def recent(self) -> tuple[float, list[RouteRecent]]:
        """Per route, the current minute and the four before it: (seconds covered, routes)."""
        seconds, totals = self.totals()
        return seconds, [
            RouteRecent(
                route=route,
                requests=counts.requests,
                rate_per_s=round(counts.requests / seconds, 4),
                errors=counts.errors,
                error_rate=round(counts.errors / counts.requests, 4),
                p50_ms=latency.percentile(counts.latency, 0.5, counts.max_ms),
                p99_ms=latency.percentile(counts.latency, 0.99, counts.max_ms),
            )
            for route, counts in sorted(totals.items())
        ]


class MinuteWriter:
    """Writes the minutes that are over every ``flush_s``, and the rest when closed."""

    def __init__(
        self,
        minutes: RequestMinutes,
        write: Callable[[Sequence[RequestMinute]], None],
        replica: str,
        flush_s: float = 10.0,
    ) -> None:
        self.minutes = minutes
        self.write = write
        self.replica = replica
        self.flush_s = flush_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request statistics")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush(everything=True)

    async def flush(self, *, everything: bool = False) -> bool:
        """Write what is due; False when the write failed (the minutes stay to be written)."""
        due, rows = self.minutes.take(self.replica, everything=everything)
        if not rows:
            return True
        try:
            await asyncio.to_thread(self.write, rows)
        except Exception as error:
            log.warning("request statistics: writing %d rows failed: %s", len(rows), error)
            self.minutes.put_back(due)
            return False
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            await self.flush()
