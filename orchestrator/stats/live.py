"""The dashboard's traffic figures: requests over every route but the monitoring ones, per
minute across the replicas (the database's rows) and just now on one replica (its memory).

The dashboard asks every few seconds, as do probes and the scraper: counting them would
show a busy service when nobody uses it, so ``/health…``, ``/metrics`` and ``/v1/stats…``
are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Self

from pydantic import BaseModel, Field

from orchestrator.db.tables import RequestMinuteSum
from orchestrator.stats import latency
from orchestrator.stats.minutes import Counts, RequestMinutes

MONITORING = ("/health", "/metrics", "/v1/stats")
"""Path prefixes of the routes that watch the service rather than use it."""
RECOGNIZE = "POST /v1/recognize"
"""The route whose answered requests are each one recognised image: the cache hit ratio's base."""
NOW_MINUTES = 2
""""Now" on a replica: its current minute and the one before, 60 to 120 s."""
MINUTE = timedelta(minutes=1)


def is_monitoring(route: str) -> bool:
    """``GET /health/ready`` is; ``POST /v1/recognize`` and ``unmatched`` are not."""
    return route.partition(" ")[2].startswith(MONITORING)


class Traffic(BaseModel):
    """Requests over a span of time, the monitoring routes left out."""

    requests: int
    rate_per_s: float = Field(description="requests per second over the span")
    errors: int = Field(description="answers with a status of 400 or more")
    error_rate: float | None = Field(description="errors / requests; null without requests")
    p50_ms: float | None = Field(description="from the summed latency histograms (within a bucket's width)")
    p99_ms: float | None
    faces: int = Field(description="faces found by the recognitions among these requests")
    cache_hits: int = Field(description="recognised images answered from the cache, a batch's too")
    cache_hit_ratio: float | None = Field(
        description=f"of the answered {RECOGNIZE} requests, those answered from the cache; null "
        "without any (a batch's images have no count of their own to divide by)"
    )

    @classmethod
    def of(cls, routes: Mapping[str, Counts], seconds: float, **more: Any) -> Self:
        """The figures of these routes' counts together, over ``seconds``."""
        total = Counts()
        for counts in routes.values():
            total.add(counts)
        single = routes.get(RECOGNIZE) or Counts()
        answered = single.requests - single.errors
        return cls(
            requests=total.requests,
            rate_per_s=round(total.requests / seconds, 4),
            errors=total.errors,
            error_rate=round(total.errors / total.requests, 4) if total.requests else None,
            p50_ms=latency.percentile(total.latency, 0.5, total.max_ms),
            p99_ms=latency.percentile(total.latency, 0.99, total.max_ms),
            faces=total.faces,
            cache_hits=total.cache_hits,
            cache_hit_ratio=round(single.cache_hits / answered, 4) if answered else None,
            **more,
        )


class MinuteTraffic(Traffic):
    minute: datetime = Field(description="the minute's start, UTC")


class RouteTraffic(Traffic):
    route: str = Field(description='method and route template: "POST /v1/recognize"')


class ReplicaTraffic(BaseModel):
    """What one replica served just now, from its memory: it changes at every request."""

    window_s: float = Field(description="the seconds covered: the current minute and the one before")
    traffic: Traffic
    routes: list[RouteTraffic] = Field(description="by route, in order")


def _counts(row: RequestMinuteSum) -> Counts:
    return Counts(
        requests=row.requests,
        errors=row.errors,
        server_errors=row.server_errors,
        faces=row.faces,
        cache_hits=row.cache_hits,
        latency=list(row.latency),
        max_ms=row.max_ms,
    )


def per_minute(rows: Iterable[RequestMinuteSum], since: datetime, until: datetime) -> list[MinuteTraffic]:
    """Every minute from ``since`` to ``until`` (exclusive), oldest first, one without requests
    too: a chart's gap is then a quiet minute, not a missing one."""
    minutes: dict[datetime, dict[str, Counts]] = {}
    for row in rows:
        if not is_monitoring(row.route):
            minutes.setdefault(row.minute, {})[row.route] = _counts(row)
    starts = [since + n * MINUTE for n in range((until - since) // MINUTE)]
    return [MinuteTraffic.of(minutes.get(start, {}), 60.0, minute=start) for start in starts]


def replica_traffic(minutes: RequestMinutes) -> ReplicaTraffic:
    seconds, routes = minutes.totals(NOW_MINUTES)
    served = {route: counts for route, counts in sorted(routes.items()) if not is_monitoring(route)}
    return ReplicaTraffic(
        window_s=round(seconds, 1),
        traffic=Traffic.of(served, seconds),
        routes=[RouteTraffic.of({route: counts}, seconds, route=route) for route, counts in served.items()],
    )
