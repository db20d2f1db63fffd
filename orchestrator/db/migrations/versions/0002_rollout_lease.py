"""Rollouts owned by a lease: kind, the collection it started from, what it reverses, owner, lease.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

MYSQL = ("mysql", "mariadb")
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *MYSQL)


def upgrade() -> None:
    # batch_alter_table: SQLite cannot add NOT NULL columns with ALTER alone on every version.
    with op.batch_alter_table("rollout") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="rollout"))
        batch.add_column(sa.Column("from_collection", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("reverses", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("owner", sa.String(200), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rollout") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("owner")
        batch.drop_column("reverses")
        batch.drop_column("from_collection")
        batch.drop_column("kind")
