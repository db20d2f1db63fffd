"""The recognition log (admin): every recognised image, answered or failed, newest first."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator, BeforeValidator

from orchestrator.api.deps import ResourcesDep, admin_principal
from orchestrator.api.params import MAX_ROW_ID, LeftOut, Offset
from orchestrator.api.responses import problems
from orchestrator.api.schemas import LogPage
from orchestrator.db.recognition_log import LogFilter
from orchestrator.db.tables import LogDecision, LogSource, LogStatus

router = APIRouter(
    prefix="/v1/log",
    tags=["log and statistics"],
    dependencies=[Depends(admin_principal)],
    responses=problems(401, 403),
)

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
MAX_LIMIT = 1000


_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ].*)?")


def date_time_text(value: object) -> object:
    """A time as RFC 3339 writes it (a date alone is midnight), never a number: pydantic would
    read ``0.5`` as seconds since 1970, a time the spec's ``date-time`` does not allow."""
    if isinstance(value, str) and not _DATE_TIME.fullmatch(value):
        raise ValueError("not a date-time such as 2026-03-01T12:00:00Z")
    return value


def utc_within_range(value: datetime | None) -> datetime | None:
    """Aware UTC (a time without an offset is UTC), clamped to what every database compares.

    Any time the spec's ``date-time`` allows is taken: one before 1970 finds what one at 1970
    would, and the year 1 at +05:00 is not an error.
    """
    if value is None:
        return None
    if value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # past datetime's own range once moved to UTC
        return EARLIEST if value.year < 5000 else LATEST
    return min(max(value, EARLIEST), LATEST)


Time = Annotated[datetime | None, BeforeValidator(date_time_text), AfterValidator(utc_within_range)]
Since = Annotated[Time, Query(description="entries made at or after this time (UTC if no offset)"), LeftOut()]
Until = Annotated[Time, Query(description="entries made before this time (UTC if no offset)"), LeftOut()]
PersonId = Annotated[
    int | None, Query(ge=1, le=MAX_ROW_ID, description="entries where a face matched this person"), LeftOut()
]
Decision = Annotated[
    LogDecision | None,
    Query(description="match: a face matched; unknown: a face matched no one; none: no face was found"),
    LeftOut(),
]
Status = Annotated[LogStatus | None, Query(description="ok: answered; error: failed"), LeftOut()]
Source = Annotated[LogSource | None, Query(description="api: a request; job: an item of a job"), LeftOut()]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="entries to return")]


@router.get("", response_model=LogPage, responses=problems(422))
async def recognition_log(
    resources: ResourcesDep,
    since: Since = None,
    until: Until = None,
    person_id: PersonId = None,
    decision: Decision = None,
    status: Status = None,
    source: Source = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """One entry per image recognised, from the API or a job, answered or failed; newest first."""
    where = LogFilter(
        since=since, until=until, person_id=person_id, decision=decision, status=status, source=source
    )
    items, total = await asyncio.to_thread(resources.gallery.recognition_log, where, limit, offset)
    return {"items": items, "total": total}
