"""Per-minute request statistics (admin), summed across the replicas that wrote them, and
the dashboard's live figures."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query

from orchestrator.api.deps import MetricsDep, ResourcesDep, admin_principal
from orchestrator.api.responses import problems
from orchestrator.api.schemas import GallerySize, LiveStats, ReplicaNow, StatsAnswer, TrafficWindow
from orchestrator.core.resources import Resources
from orchestrator.db.gallery import Gallery
from orchestrator.db.types import utcnow
from orchestrator.jobs.workforce import waiting, worker_states
from orchestrator.stats.host import host_state
from orchestrator.stats.inference import triton_statistics
from orchestrator.stats.live import per_minute, replica_traffic
from orchestrator.stats.minutes import summary

T = TypeVar("T")

router = APIRouter(
    prefix="/v1/stats",
    tags=["log and statistics"],
    dependencies=[Depends(admin_principal)],
    responses=problems(401, 403),
)

UNIT_MINUTES = {"m": 1, "h": 60, "d": 24 * 60}
WINDOW_PATTERN = r"^(?:(?:[1-9][0-9]{0,3}|100[0-7][0-9]|10080)m|(?:[1-9][0-9]?|1[0-5][0-9]|16[0-8])h|[1-7]d)$"
"""Minutes, hours or days, 1 minute to 7 days: the spec states exactly what is accepted."""
Window = Annotated[
    str,
    Query(pattern=WINDOW_PATTERN, description="how far back: 15m, 1h, 24h… up to 7d (10080m, 168h)"),
]


def window_minutes(window: str) -> int:
    """``15m`` → 15, ``2h`` → 120: a window the pattern accepted, so 1 to 7 days' worth."""
    return int(window[:-1]) * UNIT_MINUTES[window[-1]]


LiveMinutes = Annotated[int, Query(ge=5, le=180, description="how many minutes of per-minute figures")]
SETTLE_S = 2.0
"""A replica writes a minute within FACEREC_LOG__STATS_FLUSH_S of its end, the write itself
taking up to this much more: only then is the minute's sum over the replicas whole."""
PART_TIMEOUT_S = 3.0
"""The longest a part of the live figures is waited for: the dashboard asks every few seconds."""


@router.get("", response_model=StatsAnswer, responses=problems(422))
async def stats(resources: ResourcesDep, window: Window = "1h") -> Any:
    """The minutes of the window that are over, per route; the current minute once it is over."""
    until = utcnow()
    since = until.replace(second=0, microsecond=0) - timedelta(minutes=window_minutes(window))
    rows = await asyncio.to_thread(resources.gallery.request_minutes, since)
    return {"window": window, "since": since, "until": until, "items": [summary(row) for row in rows]}


async def _part(name: str, work: Awaitable[T], errors: dict[str, str]) -> T | None:
    """What ``work`` answers, or None with the reason in ``errors``: the rest is still shown."""
    try:
        return await asyncio.wait_for(work, PART_TIMEOUT_S)
    except TimeoutError:
        errors[name] = f"no answer within {PART_TIMEOUT_S:.0f} s"
    except Exception as error:  # reported in the answer, not raised: the dashboard shows what it can
        errors[name] = f"{type(error).__name__}: {error}"[:300]
    return None


def _window(resources: Resources, minutes: int) -> TrafficWindow:
    settled = utcnow() - timedelta(seconds=resources.settings.log.stats_flush_s + SETTLE_S)
    until = settled.replace(second=0, microsecond=0)
    since = until - timedelta(minutes=minutes)
    rows = resources.gallery.request_minutes(since, until)
    return TrafficWindow(since=since, until=until, minutes=per_minute(rows, since, until))


def _gallery_size(gallery: Gallery) -> GallerySize:
    _, people = gallery.list_people(limit=1)
    return GallerySize(faces=gallery.count_faces(), people=people)


@router.get("/live", response_model=LiveStats, responses=problems(422))
async def live(resources: ResourcesDep, metrics: MetricsDep, minutes: LiveMinutes = 30) -> Any:
    """The dashboard's one call: requests per minute over every replica, the answering replica's
    requests just now, Triton's per-model counters, the job queues and workers, the gallery's
    size, the process and the machine. The monitoring routes (``/health…``, ``/metrics``,
    ``/v1/stats…``) are not counted, so the dashboard's own polls do not show as traffic."""
    errors: dict[str, str] = {}
    lost_after_s = resources.settings.jobs.lost_after_s
    window, triton, queues, workers, gallery, host = await asyncio.gather(
        _part("window", asyncio.to_thread(_window, resources, minutes), errors),
        _part("triton", resources.triton.statistics(), errors),
        _part("queues", waiting(resources.jobs), errors),
        _part("workers", asyncio.to_thread(worker_states, resources.gallery, lost_after_s), errors),
        _part("gallery", asyncio.to_thread(_gallery_size, resources.gallery), errors),
        _part("host", host_state(resources.settings.data_dir), errors),
    )
    now = replica_traffic(metrics.minutes)
    process, machine = host or (None, None)
    return LiveStats(
        at=utcnow(),
        window=window,
        replica=ReplicaNow(**dict(now), pid=os.getpid(), cache=resources.cache.state()),
        triton=None if triton is None else triton_statistics(triton),
        queues=queues,
        workers=workers,
        gallery=gallery,
        process=process,
        machine=machine,
        errors=errors,
    )
