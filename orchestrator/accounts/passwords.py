"""Password hashing: argon2id through argon2-cffi, the reference binding of the winner of the
Password Hashing Competition, with its default (RFC 9106 "low memory") parameters.

Why not fastapi-users (15.0.5): it brings its own user model and an async database layer
(SQLAlchemy async or Beanie), its own routers and its own notion of "superuser". Here the
store is synchronous SQLModel shared by three databases and their migrations, roles are the
ones API keys already have, and the door checks credentials before a body is read, outside
FastAPI's dependencies. What it would give us — a password hash and a cookie — is a few
lines over argon2-cffi, which it uses itself (through pwdlib); the rest would be a second
user store beside ours.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

DUMMY_HASH = _hasher.hash("a password that nobody has")
"""Verified against when the username is unknown, so that a wrong username takes as long to
refuse as a wrong password and the timing does not tell which usernames exist."""


def _bytes(password: str) -> bytes:
    # A JSON string may hold a lone surrogate, which strict UTF-8 cannot encode.
    return password.encode("utf-8", "surrogatepass")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` in PHC form (salt and parameters included); ~50 ms."""
    return _hasher.hash(_bytes(password))


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, _bytes(password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than today's (rehash at the next login)."""
    return _hasher.check_needs_rehash(password_hash)
