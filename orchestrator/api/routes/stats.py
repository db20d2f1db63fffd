"""Per-minute request statistics (admin), summed across the replicas that wrote them."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from orchestrator.api.deps import ResourcesDep, admin_principal
from orchestrator.api.responses import problems
from orchestrator.api.schemas import StatsAnswer
from orchestrator.db.types import utcnow
from orchestrator.stats.minutes import summary

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


@router.get("", response_model=StatsAnswer, responses=problems(422))
async def stats(resources: ResourcesDep, window: Window = "1h") -> Any:
    """The minutes of the window that are over, per route; the current minute once it is over."""
    until = utcnow()
    since = until.replace(second=0, microsecond=0) - timedelta(minutes=window_minutes(window))
    rows = await asyncio.to_thread(resources.gallery.request_minutes, since)
    return {"window": window, "since": since, "until": until, "items": [summary(row) for row in rows]}
