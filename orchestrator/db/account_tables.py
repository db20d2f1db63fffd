"""The tables of user accounts (API.md, "Accounts and sessions"): users, their sessions and
the failed logins that slow down guessing.

Users share their roles with API keys. A session is found by the sha256 of the random token
its cookie carries, so the database holds nothing a stolen copy could sign in with; it lives
here rather than in a process's memory so that every replica and worker accepts it and a
logout ends it everywhere at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, StringConstraints
from sqlalchemy import CheckConstraint, Index, String
from sqlalchemy.dialects import mysql
from sqlmodel import Field

from orchestrator.db.tables import DbModel, Role
from orchestrator.db.types import MYSQL, UtcDateTime, utcnow

USERNAME_MAX = 64
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"
"""Letters, digits and ``._@-``: ASCII, so that lower-casing means the same in Python and in
every database, and a username cannot pass for another one by its look."""
PASSWORD_MIN = 8
PASSWORD_MAX = 256
"""Characters: at most 1024 bytes of UTF-8, which bounds the work of hashing one."""
ADDRESS_MAX = 64

UsernameColumn = String(USERNAME_MAX).with_variant(
    mysql.VARCHAR(USERNAME_MAX, collation="utf8mb4_bin"), *MYSQL
)
"""Stored lower-cased and compared exactly: case-insensitive once, in Python, on every database."""


def _lower(value: str) -> str:
    return value.lower()


Username = Annotated[
    str,
    StringConstraints(min_length=1, max_length=USERNAME_MAX, pattern=USERNAME_PATTERN),
    AfterValidator(_lower),
]
Password = Annotated[str, StringConstraints(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]


class User(DbModel, table=True):
    # "user" is a reserved word in PostgreSQL.
    __tablename__ = "app_user"
    __table_args__ = (CheckConstraint("role IN ('admin', 'recognize')", name="role"),)

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=USERNAME_MAX, unique=True, sa_type=UsernameColumn)
    password_hash: str = Field(max_length=255)
    """argon2id, in its PHC string form (parameters and salt included)."""
    role: str = Field(sa_type=String(16))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class UserPublic(DbModel):
    id: int
    username: str
    role: Role
    created_at: datetime


class UserSession(DbModel, table=True):
    __tablename__ = "user_session"

    id: str = Field(primary_key=True, max_length=64)
    """sha256 hex of the token in the session cookie."""
    user_id: int = Field(foreign_key="app_user.id", ondelete="CASCADE", index=True)
    csrf_hash: str = Field(max_length=64)
    """sha256 hex of the CSRF token handed out with the session."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime, index=True)


class LoginFailure(DbModel, table=True):
    """One failed login, counted per username (known or not) and per client address."""

    __tablename__ = "login_failure"
    __table_args__ = (Index(None, "username", "failed_at"), Index(None, "address", "failed_at"))

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=USERNAME_MAX, sa_type=UsernameColumn)
    address: str = Field(max_length=ADDRESS_MAX)
    failed_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, index=True)
