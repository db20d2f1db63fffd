"""Typed person fields: age, gender and address as indexed columns, carried over from attributes.

A value under the key ``age``, ``gender`` or ``address`` of a person's attributes that
passes the column's rule moves into the column and leaves the attributes, so each fact is
kept in one place (a later PATCH of the field cannot leave a stale copy behind). A value
that does not pass stays in the attributes untouched: nothing is lost. The downgrade puts
the columns' values back under their keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

MYSQL = ("mysql", "mariadb")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# Exact comparison on MySQL, as for external_id: the filters fold case with lower() the
# same way on every database, and the default collation would also fold accents.
GENDER = sa.String(32).with_variant(mysql.VARCHAR(32, collation="utf8mb4_bin"), *MYSQL)
ADDRESS = sa.String(500).with_variant(mysql.VARCHAR(500, collation="utf8mb4_bin"), *MYSQL)
AGE_MAX = 150
GENDER_MAX = 32
ADDRESS_MAX = 500
FIELDS = ("age", "gender", "address")
BATCH = 1000

# The rules are spelled out here rather than imported from the models, as the types are.
_MISSING = object()


def _age(value: Any) -> Any:
    if isinstance(value, bool):
        return _MISSING
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 0 <= value <= AGE_MAX else _MISSING


def _text(limit: int) -> Any:
    def rule(value: Any) -> Any:
        if not isinstance(value, str) or "\x00" in value:
            return _MISSING
        value = value.strip()
        return value if 0 < len(value) <= limit else _MISSING

    return rule


RULES = {"age": _age, "gender": _text(GENDER_MAX), "address": _text(ADDRESS_MAX)}

person = sa.table(
    "person",
    sa.column("id", sa.Integer()),
    sa.column("attributes", JSON),
    sa.column("age", sa.Integer()),
    sa.column("gender", GENDER),
    sa.column("address", ADDRESS),
)


def _rows() -> Any:
    """Every person's id, attributes and fields, in id order, a batch at a time."""
    bind = op.get_bind()
    last = 0
    while True:
        batch = bind.execute(
            sa.select(person.c.id, person.c.attributes, person.c.age, person.c.gender, person.c.address)
            .where(person.c.id > last)
            .order_by(person.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        yield from batch
        last = batch[-1].id


def upgrade() -> None:
    op.add_column("person", sa.Column("age", sa.Integer(), nullable=True))
    op.add_column("person", sa.Column("gender", GENDER, nullable=True))
    op.add_column("person", sa.Column("address", ADDRESS, nullable=True))
    op.create_index(op.f("ix_person_age"), "person", ["age"])
    op.create_index(op.f("ix_person_gender"), "person", ["gender"])
    op.create_index(op.f("ix_person_address"), "person", ["address"])
    bind = op.get_bind()
    for row in _rows():
        attributes = row.attributes
        if not isinstance(attributes, dict):
            continue
        values: dict[str, Any] = {}
        for field in FIELDS:
            if field in attributes:
                value = RULES[field](attributes[field])
                if value is not _MISSING:
                    values[field] = value
        if values:
            rest = {key: item for key, item in attributes.items() if key not in values}
            bind.execute(person.update().where(person.c.id == row.id).values(attributes=rest, **values))


def downgrade() -> None:
    bind = op.get_bind()
    for row in _rows():
        fields = {field: getattr(row, field) for field in FIELDS if getattr(row, field) is not None}
        attributes = row.attributes if isinstance(row.attributes, dict) else {}
        missing = {key: value for key, value in fields.items() if key not in attributes}
        if missing:
            bind.execute(
                person.update().where(person.c.id == row.id).values(attributes={**attributes, **missing})
            )
    op.drop_index(op.f("ix_person_address"), table_name="person")
    op.drop_index(op.f("ix_person_gender"), table_name="person")
    op.drop_index(op.f("ix_person_age"), table_name="person")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of the table would drop
    # and re-create ``person``, and the drop cascades to every face.
    for field in reversed(FIELDS):
        op.drop_column("person", field)
