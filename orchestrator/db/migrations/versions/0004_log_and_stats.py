"""The recognition log as API.md has it (failures, source, principal, matches) and per-minute statistics.

``recognition_log`` gains who asked, from where and how it ended; the per-face ``results``
JSON becomes rows of ``recognition_match`` (one per matched face, with the person's name
then), which the log's person filter reads through an index. ``request_minute`` holds each
replica's requests per route and minute, with a latency histogram that adds up across
replicas.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

MYSQL = ("mysql", "mariadb")
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *MYSQL)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}
BATCH = 1000

recognition_log = sa.table(
    "recognition_log",
    sa.column("id", sa.Integer()),
    sa.column("api_key_id", sa.Integer()),
    sa.column("principal", sa.String(200)),
    sa.column("results", JSON),
    sa.column("face_count", sa.Integer()),
    sa.column("matched_faces", sa.Integer()),
)
recognition_match = sa.table(
    "recognition_match",
    sa.column("log_id", sa.Integer()),
    sa.column("position", sa.Integer()),
    sa.column("person_id", sa.Integer()),
    sa.column("name", sa.String(200)),
    sa.column("similarity", sa.Double()),
)
person = sa.table("person", sa.column("id", sa.Integer()), sa.column("name", sa.String(200)))


def _entries(*columns: Any) -> Any:
    """Every log entry, in id order, a batch at a time."""
    bind = op.get_bind()
    last = 0
    while True:
        batch = bind.execute(
            sa.select(recognition_log.c.id, *columns)
            .where(recognition_log.c.id > last)
            .order_by(recognition_log.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        yield batch
        last = batch[-1].id


def _names(bind: sa.Connection, person_ids: set[int]) -> dict[int, str]:
    if not person_ids:
        return {}
    rows = bind.execute(sa.select(person.c.id, person.c.name).where(person.c.id.in_(person_ids)))
    return {row.id: row.name for row in rows}


def _matches_of_results() -> None:
    """Each entry's matched faces, from its ``results`` JSON, as match rows (the name as it is now)."""
    bind = op.get_bind()
    for batch in _entries(recognition_log.c.results):
        found = [
            (row.id, position, result)
            for row in batch
            if isinstance(row.results, list)
            for position, result in enumerate(row.results)
            if isinstance(result, dict)
            and result.get("decision") == "match"
            and isinstance(result.get("person_id"), int)
        ]
        names = _names(bind, {result["person_id"] for _, _, result in found})
        rows = [
            {
                "log_id": log_id,
                "position": position,
                "person_id": result["person_id"],
                "name": names.get(result["person_id"], "")[:200],
                "similarity": float(result.get("similarity") or 0.0),
            }
            for log_id, position, result in found
        ]
        if rows:
            bind.execute(recognition_match.insert(), rows)
            for log_id in {row["log_id"] for row in rows}:
                count = sum(1 for row in rows if row["log_id"] == log_id)
                bind.execute(
                    recognition_log.update().where(recognition_log.c.id == log_id).values(matched_faces=count)
                )


def upgrade() -> None:
    # Plain ALTER TABLE … ADD/DROP COLUMN on every backend (SQLite 3.35+): a batch copy of
    # the table would drop and re-create it, and the drop would cascade to its matches.
    columns: list[sa.Column[Any]] = [
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("source", sa.String(8), nullable=False, server_default="api"),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("principal", sa.String(200), nullable=False, server_default=""),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("status", sa.String(8), nullable=False, server_default="ok"),
        sa.Column("error_type", sa.String(64), nullable=True),
        sa.Column("error_detail", sa.String(500), nullable=True),
        sa.Column("matched_faces", sa.Integer(), nullable=False, server_default="0"),
    ]
    for column in columns:
        op.add_column("recognition_log", column)
    op.create_table(
        "recognition_match",
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("similarity", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["log_id"],
            ["recognition_log.id"],
            name=op.f("fk_recognition_match_log_id_recognition_log"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("log_id", "position", name=op.f("pk_recognition_match")),
        **TABLE,
    )
    op.create_index(
        op.f("ix_recognition_match_person_id_log_id"), "recognition_match", ["person_id", "log_id"]
    )
    op.create_table(
        "request_minute",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("minute", TIMESTAMP, nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("replica", sa.String(200), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("server_errors", sa.Integer(), nullable=False),
        sa.Column("faces", sa.Integer(), nullable=False),
        sa.Column("cache_hits", sa.Integer(), nullable=False),
        sa.Column("latency", JSON, nullable=False),
        sa.Column("max_ms", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_minute")),
        sa.UniqueConstraint("minute", "route", "replica", name=op.f("uq_request_minute_minute")),
        **TABLE,
    )
    _matches_of_results()
    # What wrote the earlier entries was an API key (or nothing that is still known).
    op.get_bind().execute(
        recognition_log.update()
        .where(recognition_log.c.api_key_id.is_not(None))
        .values(principal=sa.literal("key:") + sa.cast(recognition_log.c.api_key_id, sa.String(20)))
    )
    op.drop_column("recognition_log", "results")


def downgrade() -> None:
    op.add_column("recognition_log", sa.Column("results", JSON, nullable=True))
    bind = op.get_bind()
    for batch in _entries(recognition_log.c.face_count):
        ids = [row.id for row in batch]
        matches: dict[int, dict[int, dict[str, Any]]] = {}
        for match in bind.execute(
            sa.select(recognition_match).where(recognition_match.c.log_id.in_(ids))
        ).all():
            matches.setdefault(match.log_id, {})[match.position] = {
                "decision": "match",
                "person_id": match.person_id,
                "similarity": match.similarity,
            }
        for row in batch:
            found = matches.get(row.id, {})
            results = [
                found.get(i, {"decision": "unknown", "person_id": None, "similarity": None})
                for i in range(row.face_count)
            ]
            bind.execute(
                recognition_log.update().where(recognition_log.c.id == row.id).values(results=results)
            )
    op.drop_table("request_minute")
    op.drop_index(op.f("ix_recognition_match_person_id_log_id"), table_name="recognition_match")
    op.drop_table("recognition_match")
    # After the matches are gone: SQLite re-creates the table to change the column.
    with op.batch_alter_table("recognition_log") as batch_op:
        batch_op.alter_column("results", existing_type=JSON, nullable=False)
    for name in (
        "matched_faces",
        "error_detail",
        "error_type",
        "status",
        "filename",
        "principal",
        "job_id",
        "source",
        "request_id",
    ):
        op.drop_column("recognition_log", name)
