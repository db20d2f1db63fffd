"""Each face's impostor and genuine scores per embedder version, which the gallery calibration counts.

``face_score`` starts empty: the scores need the search service, which a migration does not
reach. A full recompute (``ScoreKeeper.recompute``) fills it; until then the calibration
finds too few scores and the shipped threshold stands.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-17
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def upgrade() -> None:
    op.create_table(
        "face_score",
        sa.Column("face_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("impostor", sa.Double(), nullable=True),
        sa.Column("impostor_face_id", sa.Integer(), nullable=True),
        sa.Column("genuine", sa.Double(), nullable=True),
        sa.Column("genuine_face_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["face_id"], ["face.id"], name=op.f("fk_face_score_face_id_face"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("face_id", "model_version", name=op.f("pk_face_score")),
        **TABLE,
    )
    op.create_index(
        op.f("ix_face_score_model_version_impostor_face_id"),
        "face_score",
        ["model_version", "impostor_face_id"],
    )
    op.create_index(
        op.f("ix_face_score_model_version_genuine_face_id"),
        "face_score",
        ["model_version", "genuine_face_id"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_face_score_model_version_genuine_face_id"), table_name="face_score")
    op.drop_index(op.f("ix_face_score_model_version_impostor_face_id"), table_name="face_score")
    op.drop_table("face_score")
