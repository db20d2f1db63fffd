"""The recognition log on every backend: entries with their matches, the filters, retention, the upgrade."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from orchestrator.db import Gallery, make_engine, migrate
from orchestrator.db.engine import alembic_config
from orchestrator.db.recognition_log import LogFilter
from orchestrator.db.tables import LogMatch, PersonCreate, RecognitionLogCreate, RecognitionMatch
from orchestrator.recognition.log_writer import Origin, failed
from tests.db.conftest import BACKENDS, fresh_database

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def entry(minutes: int, **fields: Any) -> RecognitionLogCreate:
    """An answered recognition made ``minutes`` after T0, with no face unless told."""
    return RecognitionLogCreate(
        created_at=T0 + timedelta(minutes=minutes),
        principal="key:1",
        image_sha256=f"{minutes:064x}",
        took_ms=12.5,
        model_version="1",
        **fields,
    )


def match(person_id: int, similarity: float = 0.75) -> LogMatch:
    return LogMatch(person_id=person_id, name=f"Person {person_id}", similarity=similarity)


def minutes_of(gallery: Gallery, where: LogFilter | None = None, **page: int) -> list[int]:
    items, _ = gallery.recognition_log(where or LogFilter(), **page)
    return [int((item.created_at - T0).total_seconds() // 60) for item in items]


@pytest.fixture
def logged(gallery: Gallery) -> Gallery:
    """Six entries, one a minute: matches, unknowns, no face, an error, a job's."""
    gallery.log_recognitions(
        [
            entry(0, faces=1, matches=[match(7)]),
            entry(1, faces=2, matches=[match(8, 0.5)]),  # one matched, one unknown
            entry(2, faces=1),  # unknown
            entry(3),  # no face
            entry(4, status="error", error_type="ImageError", error_detail="not an image"),
            entry(5, faces=2, matches=[match(7, 0.9), match(8, 0.6)], source="job", job_id=3, cached=True),
        ]
    )
    return gallery


def test_entries_read_back_newest_first_with_their_matches(logged: Gallery) -> None:
    items, total = logged.recognition_log()
    assert total == 6
    assert minutes_of(logged) == [5, 4, 3, 2, 1, 0]
    job = items[0]
    assert (job.source, job.job_id, job.cached, job.faces, job.principal) == ("job", 3, True, 2, "key:1")
    assert [(m.person_id, m.name, m.similarity) for m in job.matches] == [
        (7, "Person 7", 0.9),
        (8, "Person 8", 0.6),
    ]
    error = items[1]
    assert (error.status, error.error_type, error.error_detail, error.faces, error.matches) == (
        "error",
        "ImageError",
        "not an image",
        0,
        [],
    )
    assert items[-1].created_at == T0 and items[-1].took_ms == 12.5


def test_a_batch_is_written_a_row_at_a_time_where_the_database_cannot_return_ids_in_order(
    gallery: Gallery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MySQL has no INSERT ... RETURNING: each match must still land on its own entry."""
    monkeypatch.setattr(gallery.engine.dialect, "insert_executemany_returning_sort_by_parameter_order", False)
    gallery.log_recognitions(
        [entry(0, faces=1, matches=[match(7)]), entry(1), entry(2, faces=1, matches=[match(8)])]
    )
    items, total = gallery.recognition_log()
    assert total == 3
    assert [[m.person_id for m in item.matches] for item in items] == [[8], [], [7]]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (LogFilter(since=T0 + timedelta(minutes=2)), [5, 4, 3, 2]),
        (LogFilter(until=T0 + timedelta(minutes=2)), [1, 0]),
        (LogFilter(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)), [2, 1]),
        (LogFilter(person_id=7), [5, 0]),
        (LogFilter(person_id=8), [5, 1]),
        (LogFilter(person_id=9), []),
        (LogFilter(decision="match"), [5, 1, 0]),
        (LogFilter(decision="unknown"), [2, 1]),
        (LogFilter(decision="none"), [3]),
        (LogFilter(status="error"), [4]),
        (LogFilter(status="ok"), [5, 3, 2, 1, 0]),
        (LogFilter(source="job"), [5]),
        (LogFilter(source="api", person_id=8), [1]),
        (LogFilter(source="api", decision="match", since=T0 + timedelta(seconds=30)), [1]),
    ],
)
def test_filters_combine_with_and(logged: Gallery, where: LogFilter, expected: list[int]) -> None:
    assert minutes_of(logged, where) == expected
    assert logged.recognition_log(where)[1] == len(expected)


def test_pages_and_their_total(logged: Gallery) -> None:
    assert minutes_of(logged, limit=2) == [5, 4]
    assert minutes_of(logged, limit=2, offset=4) == [1, 0]
    assert minutes_of(logged, limit=2, offset=6) == []
    items, total = logged.recognition_log(LogFilter(status="ok"), limit=1, offset=1)
    assert (len(items), total) == (1, 5)


def test_retention_removes_old_entries_with_their_matches(logged: Gallery) -> None:
    assert logged.prune_recognitions(T0 + timedelta(minutes=1)) == 1
    assert logged.prune_recognitions(T0 + timedelta(minutes=1)) == 0
    assert minutes_of(logged) == [5, 4, 3, 2, 1]
    with logged.engine.connect() as connection:
        persons = connection.scalars(select(RecognitionMatch.person_id).order_by(RecognitionMatch.person_id))
        assert list(persons) == [7, 8, 8]
    assert logged.prune_recognitions(T0 + timedelta(days=1)) == 5
    assert logged.recognition_log() == ([], 0)
    with logged.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(RecognitionMatch)) == 0


def test_text_that_a_backend_would_refuse_is_stored_mended(gallery: Gallery) -> None:
    """NUL (PostgreSQL), a lone surrogate (UTF-8) and an overlong name: one bad entry must not
    sink the batch it is written in."""
    origin = Origin(principal="key:1", filename="a\x00b\udc80" + "x" * 400, request_id="r-1")
    entry = failed(origin, "0" * 64, ValueError("secret \x00"), 3.0, "1")
    gallery.log_recognitions([entry])
    [item], _ = gallery.recognition_log()
    assert item.filename is not None and len(item.filename) == 255
    assert item.filename.startswith("a\ufffdb?x")
    assert (item.error_type, item.error_detail, item.request_id) == (
        "InternalError",
        "an unexpected ValueError",
        "r-1",
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_entries_of_the_earlier_schema_keep_their_matches_and_key(backend: str, tmp_path: Path) -> None:
    """Revision 0004 turns each entry's per-face ``results`` into match rows, names them, and
    says which key asked; downgrading gives the results back."""
    from alembic import command

    with fresh_database(backend, tmp_path) as url:
        engine = make_engine(url)
        try:
            config = alembic_config()
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "0003")
            gallery = Gallery(engine)
            person = gallery.create_person(PersonCreate(name="Ada"))
            key, _ = gallery.create_key("kiosk", "recognize")
            results = [
                {"decision": "unknown", "person_id": 99, "similarity": 0.1},
                {"decision": "match", "person_id": person.id, "similarity": 0.8},
            ]
            insert = text(
                "INSERT INTO recognition_log (created_at, api_key_id, image_sha256, face_count,"
                " results, model_version, took_ms, cached) VALUES (:t, :k, :s, :n, :r, '1', 5.0, :c)"
            )
            with engine.begin() as connection:
                old_entry = {"t": "2026-01-01 00:00:00", "k": key.id, "s": "a" * 64, "n": 2, "c": False}
                connection.execute(insert, {**old_entry, "r": json.dumps(results)})
                no_face = {"t": "2026-01-01 00:01:00", "k": None, "s": "b" * 64, "n": 0, "c": True}
                connection.execute(insert, {**no_face, "r": "[]"})
            migrate(engine)
            items, total = gallery.recognition_log()
            assert total == 2
            newest = items[0]
            assert (newest.faces, newest.matches, newest.principal, newest.cached) == (0, [], "", True)
            old = items[1]
            assert (old.status, old.source, old.principal, old.faces) == ("ok", "api", f"key:{key.id}", 2)
            assert old.matches == [LogMatch(person_id=person.id, name="Ada", similarity=0.8)]
            assert gallery.recognition_log(LogFilter(decision="match"))[1] == 1
            assert gallery.recognition_log(LogFilter(decision="unknown"))[1] == 1

            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.downgrade(config, "0003")
                rows = connection.execute(text("SELECT results FROM recognition_log ORDER BY id")).all()
            back = [row[0] if isinstance(row[0], list) else json.loads(row[0]) for row in rows]
            assert back[0] == [
                {"decision": "unknown", "person_id": None, "similarity": None},
                {"decision": "match", "person_id": person.id, "similarity": 0.8},
            ]
            assert back[1] == []
            migrate(engine)
        finally:
            engine.dispose()
