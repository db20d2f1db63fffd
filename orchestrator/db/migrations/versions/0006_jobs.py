"""Jobs (API.md, "Jobs"): a job, its items and their images, and the workers that run them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

MYSQL = ("mysql", "mariadb")
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *MYSQL)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BLOB = sa.LargeBinary().with_variant(mysql.LONGBLOB(), *MYSQL)
TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def upgrade() -> None:
    op.create_table(
        "job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("options", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
        **TABLE,
    )
    op.create_index(op.f("ix_job_created_at"), "job", ["created_at"])
    op.create_index(op.f("ix_job_state_id"), "job", ["state", "id"])
    op.create_table(
        "job_item",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("task_id", sa.String(64), nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("duration_ms", sa.Double(), nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("recognised", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name=op.f("fk_job_item_job_id_job"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "index", name=op.f("pk_job_item")),
        **TABLE,
    )
    op.create_index(op.f("ix_job_item_state_job_id"), "job_item", ["state", "job_id"])
    op.create_index(op.f("ix_job_item_worker_state"), "job_item", ["worker", "state"])
    op.create_table(
        "job_image",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("data", BLOB, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id", "index"],
            ["job_item.job_id", "job_item.index"],
            name=op.f("fk_job_image_job_id_job_item"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "index", "position", name=op.f("pk_job_image")),
        **TABLE,
    )
    op.create_table(
        "job_worker",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("seen_at", TIMESTAMP, nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_worker")),
        **TABLE,
    )


def downgrade() -> None:
    op.drop_table("job_worker")
    op.drop_table("job_image")
    op.drop_index(op.f("ix_job_item_worker_state"), table_name="job_item")
    op.drop_index(op.f("ix_job_item_state_job_id"), table_name="job_item")
    op.drop_table("job_item")
    op.drop_index(op.f("ix_job_state_id"), table_name="job")
    op.drop_index(op.f("ix_job_created_at"), table_name="job")
    op.drop_table("job")
