"""Users, their sessions and the failed logins counted against guessing (see account_tables).

A deployment keeps at least one admin user once it has one: a deletion or a demotion that
would leave none is refused, whoever asks (an admin API key too). Keys administer the API,
but the web app's admin pages need a user, and getting one back would take the command line
on the server. Each such change locks the admin users' rows first, in one order, so two
changes that would each leave one admin (two admins demoting each other) run one after the
other and the second sees the first.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Select, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from orchestrator.core.errors import Conflict, InvalidRequest, NotFound
from orchestrator.db.account_tables import LoginFailure, User, UserPublic, UserSession
from orchestrator.db.store import Store
from orchestrator.db.tables import ROLES, Role
from orchestrator.db.types import utcnow

log = logging.getLogger(__name__)

REGISTRATION = "+registration"
"""What a registration is counted under in the failed logins' table: no user can have this
name (``+`` is outside USERNAME_PATTERN), so it never mixes with a username's failures."""


def token_hash(token: str) -> str:
    # 256-bit random tokens: a plain sha256 is all a stolen database copy should hold.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Credentials:
    user: UserPublic
    password_hash: str


@dataclass(frozen=True)
class NewSession:
    """A session just begun: its tokens, which are not kept anywhere but in the answer."""

    token: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class LiveSession:
    session_id: str
    csrf_hash: str
    user: UserPublic


def _public(user: User) -> UserPublic:
    assert user.id is not None
    return UserPublic(
        id=user.id, username=user.username, role=cast(Role, user.role), created_at=user.created_at
    )


def _keep_an_admin(session: Session, user_id: int, change: str) -> None:
    """Conflict if the user is the only admin user, which the change would leave none.

    The admin users' rows stay locked (FOR UPDATE; SQLite's write transaction holds the whole
    database) until the transaction ends, so a concurrent change waits and then counts anew.
    """
    admins = session.execute(
        select(col(User.id), col(User.username))
        .where(col(User.role) == "admin")
        .order_by(col(User.id))
        .with_for_update()
    ).all()
    if [found.id for found in admins] == [user_id]:
        raise Conflict(
            f"{admins[0].username!r} is the last admin user and cannot be {change}: "
            "make another user admin first"
        )


class Accounts(Store):
    def create_user(self, username: str, password_hash: str, role: str) -> UserPublic:
        """A new user; ``username`` as validated (lower-cased). Conflict when it is taken."""
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}")
        user = User(username=username.lower(), password_hash=password_hash, role=role)
        try:
            with self._writing() as session:
                session.add(user)
        except IntegrityError:
            raise Conflict(f"the username {user.username!r} is taken") from None
        log.info("user created", extra={"user_id": user.id, "role": role})
        return _public(user)

    def list_users(self) -> list[UserPublic]:
        with self._reading() as session:
            return [_public(u) for u in session.scalars(select(User).order_by(col(User.id))).all()]

    def delete_user(self, user_id: int) -> None:
        """Delete the user and end its sessions (in the same transaction); NotFound if none,
        Conflict if it is the last admin user."""
        with self._writing() as session:
            _keep_an_admin(session, user_id, "deleted")
            session.execute(delete(UserSession).where(col(UserSession.user_id) == user_id))
            deleted = session.execute(delete(User).where(col(User.id) == user_id))
            if deleted.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"user {user_id} not found")
        log.info("user deleted", extra={"user_id": user_id})

    def update_user(
        self,
        user_id: int,
        *,
        role: str | None = None,
        password_hash: str | None = None,
        keep_session: str | None = None,
    ) -> UserPublic:
        """Change the user's role and/or password in one transaction. A new password ends the
        user's sessions but ``keep_session`` (the one asking, when it changes its own).
        NotFound if no such user; Conflict for a demotion of the last admin user."""
        if role is not None and role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}")
        with self._writing() as session:
            if role is not None and role != "admin":
                _keep_an_admin(session, user_id, "demoted")
            user = session.get(User, user_id, with_for_update=True)
            if user is None:
                raise NotFound(f"user {user_id} not found")
            if role is not None:
                user.role = role
            if password_hash is not None:
                user.password_hash = password_hash
                ended = delete(UserSession).where(col(UserSession.user_id) == user_id)
                if keep_session is not None:
                    ended = ended.where(col(UserSession.id) != keep_session)
                session.execute(ended)
            public = _public(user)
        log.info(
            "user changed",
            extra={"user_id": user_id, "role": role, "password_changed": password_hash is not None},
        )
        return public

    def credentials(self, username: str) -> Credentials | None:
        with self._reading() as session:
            user = session.scalars(select(User).where(col(User.username) == username.lower())).one_or_none()
            return None if user is None else Credentials(_public(user), user.password_hash)

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        with self._writing() as session:
            user = session.get(User, user_id)
            if user is not None:
                user.password_hash = password_hash

    def start_session(self, user_id: int, ttl: timedelta) -> NewSession:
        """A new session of the user; expired sessions of anyone are removed on the way."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        row = UserSession(
            id=token_hash(token),
            user_id=user_id,
            csrf_hash=token_hash(csrf),
            created_at=now,
            expires_at=now + ttl,
        )
        with self._writing() as session:
            session.execute(delete(UserSession).where(col(UserSession.expires_at) <= now))
            session.add(row)
        return NewSession(token, csrf, row.expires_at)

    def live_session(self, token: str) -> LiveSession | None:
        """The session of this cookie token and its user, unless it is unknown or has expired."""
        with self._reading() as session:
            found = session.execute(
                select(UserSession, User)
                .join(User, col(User.id) == col(UserSession.user_id))
                .where(col(UserSession.id) == token_hash(token), col(UserSession.expires_at) > utcnow())
            ).one_or_none()
            if found is None:
                return None
            row, user = found
            return LiveSession(row.id, row.csrf_hash, _public(user))

    def end_session(self, session_id: str) -> None:
        with self._writing() as session:
            session.execute(delete(UserSession).where(col(UserSession.id) == session_id))

    def login_failures(
        self, username: str, address: str, since: datetime, besides: int | None = None
    ) -> tuple[list[datetime], list[datetime]]:
        """When the failed logins since ``since`` were, for the username and for the address,
        oldest first; ``besides``: leaving out that one (the attempt being judged)."""
        with self._reading() as session:
            by_name = session.scalars(_since(col(LoginFailure.username) == username.lower(), since, besides))
            by_address = session.scalars(
                _since(
                    (col(LoginFailure.address) == address) & (col(LoginFailure.username) != REGISTRATION),
                    since,
                    besides,
                )
            )
            return list(by_name), list(by_address)

    def record_login_failure(self, username: str, address: str, window: timedelta) -> int:
        """Count a failed login (or an attempt, until it succeeds); its id. Those older than
        ``window`` are removed on the way."""
        now = utcnow()
        failure = LoginFailure(username=username.lower(), address=address, failed_at=now)
        with self._writing() as session:
            session.execute(delete(LoginFailure).where(col(LoginFailure.failed_at) <= now - window))
            session.add(failure)
        assert failure.id is not None
        return failure.id

    def record_registration(self, address: str, window: timedelta) -> int:
        """Count a registration from the address (the failed logins' table, apart from them); its id."""
        return self.record_login_failure(REGISTRATION, address, window)

    def registrations(self, address: str, since: datetime, besides: int | None = None) -> list[datetime]:
        """When the registrations from the address since ``since`` were, oldest first."""
        where = (col(LoginFailure.username) == REGISTRATION) & (col(LoginFailure.address) == address)
        with self._reading() as session:
            return list(session.scalars(_since(where, since, besides)))

    def forget_login_failure(self, failure_id: int) -> None:
        """Uncount one failed login or registration (an attempt that was refused unheard)."""
        with self._writing() as session:
            session.execute(delete(LoginFailure).where(col(LoginFailure.id) == failure_id))

    def forget_login_failures(self, username: str) -> None:
        """After a successful login: the username's count starts again (the address's stays)."""
        with self._writing() as session:
            session.execute(delete(LoginFailure).where(col(LoginFailure.username) == username.lower()))


def _since(where: ColumnElement[bool], since: datetime, besides: int | None) -> Select[datetime]:
    return (
        select(col(LoginFailure.failed_at))
        .where(where, col(LoginFailure.failed_at) > since, col(LoginFailure.id) != (besides or 0))
        .order_by(col(LoginFailure.failed_at))
    )
