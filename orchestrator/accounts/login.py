"""Checking a user's password: to sign in, and to change one's own password.

Each check is throttled (:mod:`orchestrator.accounts.throttle`): failures are counted per
username and per client address, and past the limit an attempt is refused before its
password is looked at, so guessing runs at ``login_max_failures`` per window whether it
goes through the sign-in or through a stolen session's password change. An unknown username
is counted, throttled and timed like a known one: its password is verified against a dummy
hash, and the refusal says the same thing.
"""

from __future__ import annotations

from datetime import timedelta

from orchestrator.accounts.passwords import DUMMY_HASH, hash_password, needs_rehash, verify_password
from orchestrator.accounts.principal import Principal
from orchestrator.accounts.throttle import admit_password_attempt
from orchestrator.core.errors import Forbidden, Unauthorized
from orchestrator.core.settings import AuthSettings
from orchestrator.db.account_tables import UserPublic
from orchestrator.db.accounts import Credentials, NewSession
from orchestrator.db.gallery import Gallery

WRONG = "wrong username or password"


def _checked(
    gallery: Gallery, settings: AuthSettings, username: str, password: str, address: str
) -> Credentials | None:
    """The user's credentials if the password is theirs, else None (the failure stays
    counted); TooManyAttempts when the username or the address failed too often lately."""
    admit_password_attempt(gallery, settings, username, address)
    found = gallery.credentials(username)
    verified = verify_password(found.password_hash if found else DUMMY_HASH, password)
    if found is None or not verified:
        return None
    gallery.forget_login_failures(username)
    return found


def sign_in(
    gallery: Gallery, settings: AuthSettings, username: str, password: str, address: str
) -> tuple[UserPublic, NewSession]:
    """The user and a new session; Unauthorized when the pair is wrong, TooManyAttempts when
    the username or the address failed too often lately. Synchronous: argon2 takes ~50 ms."""
    found = _checked(gallery, settings, username, password, address)
    if found is None:
        raise Unauthorized(WRONG)
    if needs_rehash(found.password_hash):
        gallery.set_password_hash(found.user.id, hash_password(password))
    return found.user, gallery.start_session(found.user.id, timedelta(seconds=settings.session_ttl_s))


def change_own_password(
    gallery: Gallery, settings: AuthSettings, user: Principal, current: str, new: str, address: str
) -> None:
    """The signed-in user's new password, once the current one is checked like a login; the
    user's other sessions end, the one asking stays. Forbidden when the current password is
    wrong (not 401: the session itself is fine), or when an API key asks."""
    if user.kind != "user":
        raise Forbidden(f"{user.described} has no password; a user signs in to change theirs")
    if _checked(gallery, settings, user.name, current, address) is None:
        raise Forbidden("the current password is wrong")
    gallery.update_user(user.id, password_hash=hash_password(new), keep_session=user.session_id)
