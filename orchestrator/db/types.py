"""Column types that behave the same on SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, LargeBinary, String
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

MYSQL = ("mysql", "mariadb")

Blob = LargeBinary().with_variant(mysql.LONGBLOB(), *MYSQL)
"""Bytes; MySQL's plain BLOB stops at 64 KB, too small for a PNG crop."""

Json = JSON().with_variant(postgresql.JSONB(), "postgresql")
"""JSON; JSONB on PostgreSQL so the text cast used by search is normalised."""

ExternalIdColumn = String(200).with_variant(mysql.VARCHAR(200, collation="utf8mb4_bin"), *MYSQL)
"""Compared exactly on MySQL too; its default collations ignore case and trailing spaces."""
GenderColumn = String(32).with_variant(mysql.VARCHAR(32, collation="utf8mb4_bin"), *MYSQL)
AddressColumn = String(500).with_variant(mysql.VARCHAR(500, collation="utf8mb4_bin"), *MYSQL)
"""Exact on MySQL as well: the people filters fold case with ``lower()`` alike on every database,
where MySQL's default collations would also fold accents."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in, an aware UTC datetime out, on every backend.

    SQLite and MySQL have no time zone in their column types, so values are stored as
    naive UTC and given back their zone when read. MySQL gets microseconds (DATETIME(6)):
    the default DATETIME would round to whole seconds and reorder close events.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in MYSQL:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError("naive datetime: the database keeps aware UTC timestamps")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
