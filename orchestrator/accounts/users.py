"""Adding and changing users: passwords hashed here, so no caller stores one in the clear by
mistake."""

from __future__ import annotations

from orchestrator.accounts.passwords import hash_password
from orchestrator.accounts.throttle import admit_registration
from orchestrator.core.settings import AuthSettings
from orchestrator.db.account_tables import UserPublic
from orchestrator.db.gallery import Gallery


def add_user(gallery: Gallery, username: str, password: str, role: str) -> UserPublic:
    """A new user (Conflict when the username is taken). Synchronous: argon2 takes ~50 ms."""
    return gallery.create_user(username, hash_password(password), role)


def register(
    gallery: Gallery, settings: AuthSettings, username: str, password: str, address: str
) -> UserPublic:
    """A new ``recognize`` user by open registration, throttled per client address (each
    costs an argon2 hash, and a flood of accounts is a nuisance of its own)."""
    admit_registration(gallery, settings, address)
    return add_user(gallery, username, password, "recognize")


def change_user(
    gallery: Gallery,
    user_id: int,
    *,
    role: str | None = None,
    password: str | None = None,
    keep_session: str | None = None,
) -> UserPublic:
    """An admin's change of a user's role and/or password; a new password ends the user's
    sessions but ``keep_session``. Conflict for a demotion of the last admin user."""
    password_hash = None if password is None else hash_password(password)
    return gallery.update_user(user_id, role=role, password_hash=password_hash, keep_session=keep_session)
