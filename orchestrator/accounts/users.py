"""Adding a user: its password hashed here, so no caller stores one in the clear by mistake."""

from __future__ import annotations

from orchestrator.accounts.passwords import hash_password
from orchestrator.db.account_tables import UserPublic
from orchestrator.db.gallery import Gallery


def add_user(gallery: Gallery, username: str, password: str, role: str) -> UserPublic:
    """A new user (Conflict when the username is taken). Synchronous: argon2 takes ~50 ms."""
    return gallery.create_user(username, hash_password(password), role)
