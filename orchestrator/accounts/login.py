"""Signing in with a username and password, and the throttle on failed attempts.

Failures are counted in the database per username and per client address over
``login_window_s``, so every replica sees them. Past the limit each attempt is refused with
429 and Retry-After (when the oldest counted failure leaves the window) before its password
is looked at, so guessing runs at ``login_max_failures`` per window. An attempt is written
as a failure before the others are counted, and forgotten once it succeeds or is refused:
counted only after the check, a burst of parallel guesses would all find the count below
the limit. An unknown username is counted, throttled and timed like a known one: its
password is verified against a dummy hash, and the refusal says the same thing.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from orchestrator.accounts.passwords import DUMMY_HASH, hash_password, needs_rehash, verify_password
from orchestrator.core.errors import TooManyAttempts, Unauthorized
from orchestrator.core.settings import AuthSettings
from orchestrator.db.account_tables import ADDRESS_MAX, UserPublic
from orchestrator.db.accounts import NewSession
from orchestrator.db.gallery import Gallery
from orchestrator.db.types import utcnow

WRONG = "wrong username or password"


def _wait_s(failures: list[datetime], limit: int, window: timedelta, now: datetime) -> int:
    """Seconds until fewer than ``limit`` of these failures (oldest first) are in the window."""
    if len(failures) < limit:
        return 0
    frees_at = failures[len(failures) - limit] + window
    return max(1, math.ceil((frees_at - now).total_seconds()))


def sign_in(
    gallery: Gallery, settings: AuthSettings, username: str, password: str, address: str
) -> tuple[UserPublic, NewSession]:
    """The user and a new session; Unauthorized when the pair is wrong, TooManyAttempts when
    the username or the address failed too often lately. Synchronous: argon2 takes ~50 ms."""
    address = address[:ADDRESS_MAX]
    window = timedelta(seconds=settings.login_window_s)
    attempt = gallery.record_login_failure(username, address, window)
    now = utcnow()
    by_name, by_address = gallery.login_failures(username, address, now - window, besides=attempt)
    wait = max(
        _wait_s(by_name, settings.login_max_failures, window, now),
        _wait_s(by_address, settings.login_max_failures_per_address, window, now),
    )
    if wait:  # not counted: refused attempts do not push the end of the wait further
        gallery.forget_login_failure(attempt)
        raise TooManyAttempts(f"too many failed logins; try again in {wait} s", retry_after_s=wait)
    found = gallery.credentials(username)
    verified = verify_password(found.password_hash if found else DUMMY_HASH, password)
    if found is None or not verified:
        raise Unauthorized(WRONG)  # the attempt stays counted
    if needs_rehash(found.password_hash):
        gallery.set_password_hash(found.user.id, hash_password(password))
    gallery.forget_login_failures(username)
    return found.user, gallery.start_session(found.user.id, timedelta(seconds=settings.session_ttl_s))
