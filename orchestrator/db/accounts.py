"""Users, their sessions and the failed logins counted against guessing (see account_tables)."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped
from sqlmodel import col

from orchestrator.core.errors import Conflict, InvalidRequest, NotFound
from orchestrator.db.account_tables import LoginFailure, User, UserPublic, UserSession
from orchestrator.db.store import Store
from orchestrator.db.tables import ROLES, Role
from orchestrator.db.types import utcnow

log = logging.getLogger(__name__)


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
        """Delete the user and end its sessions (in the same transaction); NotFound if none."""
        with self._writing() as session:
            session.execute(delete(UserSession).where(col(UserSession.user_id) == user_id))
            deleted = session.execute(delete(User).where(col(User.id) == user_id))
            if deleted.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"user {user_id} not found")
        log.info("user deleted", extra={"user_id": user_id})

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

        def since_then(column: Mapped[str], value: str) -> Select[datetime]:
            return (
                select(col(LoginFailure.failed_at))
                .where(column == value, col(LoginFailure.failed_at) > since)
                .where(col(LoginFailure.id) != (besides or 0))
                .order_by(col(LoginFailure.failed_at))
            )

        with self._reading() as session:
            by_name = session.scalars(since_then(col(LoginFailure.username), username.lower())).all()
            by_address = session.scalars(since_then(col(LoginFailure.address), address)).all()
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

    def forget_login_failure(self, failure_id: int) -> None:
        with self._writing() as session:
            session.execute(delete(LoginFailure).where(col(LoginFailure.id) == failure_id))

    def forget_login_failures(self, username: str) -> None:
        """After a successful login: the username's count starts again (the address's stays)."""
        with self._writing() as session:
            session.execute(delete(LoginFailure).where(col(LoginFailure.username) == username.lower()))
