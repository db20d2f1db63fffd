"""Per-minute request statistics of every replica: written per replica, summed when read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlmodel import col

from orchestrator.db.store import Store
from orchestrator.db.tables import RequestMinute, RequestMinuteSum

COUNTS = ("requests", "errors", "server_errors", "faces", "cache_hits")


def _summed(rows: Sequence[RequestMinute]) -> RequestMinuteSum:
    """One (minute, route) over its replicas: counts and histograms added, the largest max."""
    return RequestMinuteSum(
        minute=rows[0].minute,
        route=rows[0].route,
        **{name: sum(getattr(row, name) for row in rows) for name in COUNTS},
        latency=[sum(counts) for counts in zip(*(row.latency for row in rows), strict=True)],
        max_ms=max(row.max_ms for row in rows),
        replicas=len({row.replica for row in rows}),
    )


class RequestStatistics(Store):
    def add_request_minutes(self, rows: Sequence[RequestMinute]) -> None:
        """Write one replica's minutes; a (minute, route, replica) already there is kept as it is.

        A replica writes each minute once; a row is only there already when a write whose
        commit was lost on the way back is retried.
        """
        with self._writing() as session:
            existing: set[tuple[datetime, str, str]] = set()
            for replica in {row.replica for row in rows}:
                minutes = [row.minute for row in rows if row.replica == replica]
                found = session.execute(
                    select(col(RequestMinute.minute), col(RequestMinute.route)).where(
                        col(RequestMinute.replica) == replica,
                        col(RequestMinute.minute) >= min(minutes),
                        col(RequestMinute.minute) <= max(minutes),
                    )
                )
                existing |= {(minute, route, replica) for minute, route in found}
            session.add_all(row for row in rows if (row.minute, row.route, row.replica) not in existing)

    def request_minutes(self, since: datetime, until: datetime | None = None) -> list[RequestMinuteSum]:
        """Every route's minutes from ``since`` (inclusive) to ``until`` (exclusive), summed over
        the replicas, oldest first and by route within a minute."""
        conditions: list[Any] = [col(RequestMinute.minute) >= since]
        if until is not None:
            conditions.append(col(RequestMinute.minute) < until)
        with self._reading() as session:
            rows = session.scalars(
                select(RequestMinute)
                .where(*conditions)
                .order_by(col(RequestMinute.minute), col(RequestMinute.route))
            ).all()
        groups: dict[tuple[datetime, str], list[RequestMinute]] = {}
        for row in rows:
            groups.setdefault((row.minute, row.route), []).append(row)
        return [_summed(group) for group in groups.values()]

    def prune_request_minutes(self, before: datetime) -> int:
        """Delete the minutes that began before ``before``; how many rows went."""
        with self._writing() as session:
            result = session.execute(delete(RequestMinute).where(col(RequestMinute.minute) < before))
        return int(getattr(result, "rowcount", 0) or 0)
