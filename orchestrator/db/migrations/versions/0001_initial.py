"""Initial schema: person, face, face_embedding, api_key, recognition_log, rollout, gallery_state.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Names go through op.f() so the models' naming convention leaves them as written.
# Types spelled out here rather than imported, so later edits of the models cannot
# change what this revision creates.
MYSQL = ("mysql", "mariadb")
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *MYSQL)
BLOB = sa.LargeBinary().with_variant(mysql.LONGBLOB(), *MYSQL)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# Exact comparison on MySQL as elsewhere: its default collations would make "A1" and
# "a1 " the same external id.
EXTERNAL_ID = sa.String(200).with_variant(mysql.VARCHAR(200, collation="utf8mb4_bin"), *MYSQL)
# Whatever the server's default character set, names and attributes are Unicode.
TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def upgrade() -> None:
    op.create_table(
        "person",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("external_id", EXTERNAL_ID, nullable=True),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person")),
        sa.UniqueConstraint("external_id", name=op.f("uq_person_external_id")),
        **TABLE,
    )
    op.create_table(
        "face",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("crop_png", BLOB, nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("quality", sa.Double(), nullable=False),
        sa.Column("det_score", sa.Double(), nullable=False),
        sa.Column("box", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.id"], name=op.f("fk_face_person_id_person"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face")),
        sqlite_autoincrement=True,
        **TABLE,
    )
    op.create_index(op.f("ix_face_person_id"), "face", ["person_id"])
    op.create_index(op.f("ix_face_image_sha256"), "face", ["image_sha256"])
    op.create_table(
        "face_embedding",
        sa.Column("face_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("embedding", BLOB, nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["face_id"], ["face.id"], name=op.f("fk_face_embedding_face_id_face"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("face_id", "model_version", name=op.f("pk_face_embedding")),
        **TABLE,
    )
    op.create_index(
        op.f("ix_face_embedding_model_version_face_id"), "face_embedding", ["model_version", "face_id"]
    )
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(8), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint("role IN ('admin', 'recognize')", name=op.f("ck_api_key_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_key_key_hash")),
        **TABLE,
    )
    op.create_table(
        "recognition_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("face_count", sa.Integer(), nullable=False),
        sa.Column("results", JSON, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("took_ms", sa.Double(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_key.id"],
            name=op.f("fk_recognition_log_api_key_id_api_key"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recognition_log")),
        **TABLE,
    )
    op.create_index(op.f("ix_recognition_log_created_at"), "recognition_log", ["created_at"])
    op.create_table(
        "rollout",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("from_version", sa.String(64), nullable=False),
        sa.Column("to_version", sa.String(64), nullable=False),
        sa.Column("collection", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("error", sa.String(2000), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout")),
        **TABLE,
    )
    state = op.create_table(
        "gallery_state",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("gallery_id", sa.String(32), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("active_model_version", sa.String(64), nullable=False),
        sa.Column("active_collection", sa.String(200), nullable=False),
        sa.Column("pending_model_version", sa.String(64), nullable=True),
        sa.Column("pending_collection", sa.String(200), nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_gallery_state_singleton")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gallery_state")),
        **TABLE,
    )
    # The one row exists from the start, so every writer can lock it and bump it.
    now = datetime.now(UTC)
    if op.get_bind().dialect.name != "postgresql":
        now = now.replace(tzinfo=None)  # stored as naive UTC where columns have no zone
    op.execute(
        state.insert().values(
            id=1,
            gallery_id=uuid.uuid4().hex,
            generation=1,
            active_model_version="1",
            active_collection="arcface-v1-g1",
            updated_at=now,
        )
    )


def downgrade() -> None:
    op.drop_table("gallery_state")
    op.drop_table("rollout")
    op.drop_index(op.f("ix_recognition_log_created_at"), table_name=op.f("recognition_log"))
    op.drop_table("recognition_log")
    op.drop_table("api_key")
    op.drop_index(op.f("ix_face_embedding_model_version_face_id"), table_name=op.f("face_embedding"))
    op.drop_table("face_embedding")
    op.drop_index(op.f("ix_face_image_sha256"), table_name=op.f("face"))
    op.drop_index(op.f("ix_face_person_id"), table_name=op.f("face"))
    op.drop_table("face")
    op.drop_table("person")
