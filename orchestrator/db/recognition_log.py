"""The recognition log: one entry per recognised image, answered or failed, with its matches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, func, select
from sqlmodel import col

from orchestrator.db.store import CHUNK, Store, chunks
from orchestrator.db.tables import (
    LogDecision,
    LogMatch,
    LogSource,
    LogStatus,
    RecognitionLog,
    RecognitionLogCreate,
    RecognitionLogPublic,
    RecognitionMatch,
    metadata,
)

LOG_TABLE = metadata.tables[RecognitionLog.__tablename__]
MATCH_TABLE = metadata.tables[RecognitionMatch.__tablename__]
PRUNE_BATCH = CHUNK
"""Entries deleted per transaction: a long retention sweep never holds the table for long."""


@dataclass(frozen=True)
class LogFilter:
    """Which entries: each given condition must hold. ``since`` inclusive, ``until`` exclusive."""

    since: datetime | None = None
    until: datetime | None = None
    person_id: int | None = None
    decision: LogDecision | None = None
    status: LogStatus | None = None
    source: LogSource | None = None


def _conditions(where: LogFilter) -> list[Any]:
    log = RecognitionLog
    conditions: list[Any] = []
    if where.since is not None:
        conditions.append(col(log.created_at) >= where.since)
    if where.until is not None:
        conditions.append(col(log.created_at) < where.until)
    if where.status is not None:
        conditions.append(col(log.status) == where.status)
    if where.source is not None:
        conditions.append(col(log.source) == where.source)
    if where.person_id is not None:
        conditions.append(
            exists().where(
                col(RecognitionMatch.log_id) == col(log.id),
                col(RecognitionMatch.person_id) == where.person_id,
            )
        )
    if where.decision == "match":
        conditions.append(col(log.matched_faces) > 0)
    elif where.decision == "unknown":
        conditions.append(col(log.face_count) > col(log.matched_faces))
    elif where.decision == "none":
        conditions.extend([col(log.face_count) == 0, col(log.status) == "ok"])
    return conditions


def _row(entry: RecognitionLogCreate) -> dict[str, Any]:
    return {
        **entry.model_dump(exclude={"faces", "matches"}),
        "face_count": entry.faces,
        "matched_faces": len(entry.matches),
    }


def _insert_entries(connection: Connection, entries: Sequence[RecognitionLogCreate]) -> list[int]:
    """Insert the entries; their ids, in order. One statement where the database returns ids
    from a multi-row insert in order (SQLite, PostgreSQL, MariaDB), else a row at a time."""
    rows = [_row(entry) for entry in entries]
    if connection.dialect.insert_executemany_returning_sort_by_parameter_order:
        statement = LOG_TABLE.insert().returning(LOG_TABLE.c.id, sort_by_parameter_order=True)
        return list(connection.execute(statement, rows).scalars())
    ids = []
    for row in rows:
        key = connection.execute(LOG_TABLE.insert(), row).inserted_primary_key
        assert key is not None, "an insert of one row has its primary key"
        ids.append(int(key[0]))
    return ids


class RecognitionLogs(Store):
    def log_recognitions(self, entries: Sequence[RecognitionLogCreate]) -> None:
        """Record recognitions and their matches in one transaction (the log writer's batches).

        Core inserts, not ORM objects: the log is written all day, and the ORM's unit of work
        cost three times the CPU (0.47 against 0.14 ms an entry, made and written in batches
        of ten, on SQLite).
        """
        with self._write_engine.begin() as connection:
            ids = _insert_entries(connection, entries)
            matches = [
                {"log_id": log_id, "position": position, **match.model_dump()}
                for log_id, entry in zip(ids, entries, strict=True)
                for position, match in enumerate(entry.matches)
            ]
            if matches:
                connection.execute(MATCH_TABLE.insert(), matches)

    def recognition_log(
        self, where: LogFilter | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[RecognitionLogPublic], int]:
        """The entries that pass ``where``, newest first, and how many pass in all."""
        conditions = _conditions(where or LogFilter())
        with self._reading() as session:
            total = session.scalar(select(func.count()).select_from(RecognitionLog).where(*conditions))
            rows = session.scalars(
                select(RecognitionLog)
                .where(*conditions)
                .order_by(col(RecognitionLog.created_at).desc(), col(RecognitionLog.id).desc())
                .limit(limit)
                .offset(offset)
            ).all()
            matches: dict[int, list[LogMatch]] = {}
            for ids in chunks([row.id for row in rows if row.id is not None]):
                for match in session.scalars(
                    select(RecognitionMatch)
                    .where(col(RecognitionMatch.log_id).in_(ids))
                    .order_by(col(RecognitionMatch.log_id), col(RecognitionMatch.position))
                ):
                    matches.setdefault(match.log_id, []).append(
                        LogMatch(person_id=match.person_id, name=match.name, similarity=match.similarity)
                    )
            items = [
                RecognitionLogPublic.model_validate(
                    {**row.model_dump(), "faces": row.face_count, "matches": matches.get(row.id or 0, [])}
                )
                for row in rows
            ]
        return items, int(total or 0)

    def prune_recognitions(self, before: datetime) -> int:
        """Delete the entries made before ``before`` (their matches go with them); how many went."""
        removed = 0
        while True:
            with self._writing() as session:
                ids = session.scalars(
                    select(col(RecognitionLog.id))
                    .where(col(RecognitionLog.created_at) < before)
                    .order_by(col(RecognitionLog.id))
                    .limit(PRUNE_BATCH)
                ).all()
                if ids:
                    # The matches by name too: SQLite cascades only with its foreign keys on.
                    session.execute(delete(RecognitionMatch).where(col(RecognitionMatch.log_id).in_(ids)))
                    session.execute(delete(RecognitionLog).where(col(RecognitionLog.id).in_(ids)))
            removed += len(ids)
            if len(ids) < PRUNE_BATCH:
                return removed
