"""The throttle on attempts that an outsider could repeat: password guesses and registrations.

Attempts are counted in the database over ``login_window_s``, so every replica sees them.
An attempt is written before the others are counted: counted only after the check, a burst
of parallel attempts would all find the count below the limit. Past the limit an attempt is
refused with 429 and Retry-After (when the oldest counted one leaves the window) and is not
counted, so refusals do not push the end of the wait further.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from orchestrator.core.errors import TooManyAttempts
from orchestrator.core.settings import AuthSettings
from orchestrator.db.account_tables import ADDRESS_MAX
from orchestrator.db.gallery import Gallery
from orchestrator.db.types import utcnow


def _wait_s(earlier: list[datetime], limit: int, window: timedelta, now: datetime) -> int:
    """Seconds until fewer than ``limit`` of these attempts (oldest first) are in the window."""
    if len(earlier) < limit:
        return 0
    frees_at = earlier[len(earlier) - limit] + window
    return max(1, math.ceil((frees_at - now).total_seconds()))


def _refuse_if_waiting(gallery: Gallery, attempt: int, wait: int, what: str) -> None:
    if wait:
        gallery.forget_login_failure(attempt)
        raise TooManyAttempts(f"too many {what}; try again in {wait} s", retry_after_s=wait)


def admit_password_attempt(gallery: Gallery, settings: AuthSettings, username: str, address: str) -> int:
    """Count a password check for the username from the address, as a failure until it is
    forgotten on success; its id. TooManyAttempts when either failed too often lately."""
    window = timedelta(seconds=settings.login_window_s)
    attempt = gallery.record_login_failure(username, address[:ADDRESS_MAX], window)
    now = utcnow()
    by_name, by_address = gallery.login_failures(
        username, address[:ADDRESS_MAX], now - window, besides=attempt
    )
    wait = max(
        _wait_s(by_name, settings.login_max_failures, window, now),
        _wait_s(by_address, settings.login_max_failures_per_address, window, now),
    )
    _refuse_if_waiting(gallery, attempt, wait, "failed logins")
    return attempt


def admit_registration(gallery: Gallery, settings: AuthSettings, address: str) -> None:
    """Count a registration from the address; TooManyAttempts past its limit.

    An address may register as many users in the window as it may fail logins
    (``login_max_failures_per_address``: sized for a NAT in front of many people), counted
    apart from its failed logins so that neither holds up the other.
    """
    window = timedelta(seconds=settings.login_window_s)
    attempt = gallery.record_registration(address[:ADDRESS_MAX], window)
    now = utcnow()
    earlier = gallery.registrations(address[:ADDRESS_MAX], now - window, besides=attempt)
    wait = _wait_s(earlier, settings.login_max_failures_per_address, window, now)
    _refuse_if_waiting(gallery, attempt, wait, "registrations from this address")
