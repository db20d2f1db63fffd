"""API keys: only their sha256 is stored; the key itself is shown once, at creation."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from orchestrator.core.errors import Conflict, InvalidRequest, NotFound
from orchestrator.db.store import Store, valid
from orchestrator.db.tables import ROLES, ApiKey, ApiKeyPublic, GalleryState, Role, clean_name
from orchestrator.db.types import utcnow

log = logging.getLogger(__name__)

KEY_PREFIX = "frk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""last_used_at is refreshed at most this often, so a request is not also a write."""
SHORT_KEY = 16


def hash_key(plaintext: str) -> str:
    # A plain sha256 is enough: keys are 256-bit random (or chosen by the operator),
    # not passwords, so there is nothing for a slow hash to protect.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _public(key: ApiKey) -> ApiKeyPublic:
    assert key.id is not None
    return ApiKeyPublic(
        id=key.id,
        name=key.name,
        role=cast(Role, key.role),
        prefix=key.prefix,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked=key.revoked_at is not None,
    )


def used_long_ago(key: ApiKeyPublic) -> bool:
    """Whether a use of this key now is worth recording (see LAST_USED_RESOLUTION)."""
    return key.last_used_at is None or utcnow() - key.last_used_at >= LAST_USED_RESOLUTION


def _row(name: str, role: str, plaintext: str) -> ApiKey:
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}")
    # A short operator-chosen key must not be mostly given away by its listed prefix.
    prefix = plaintext[: min(8, len(plaintext) // 4)]
    return ApiKey(name=valid(clean_name, name), role=role, key_hash=hash_key(plaintext), prefix=prefix)


class Keys(Store):
    def create_key(self, name: str, role: str) -> tuple[ApiKeyPublic, str]:
        """A new key: its public record and the plaintext, which is not kept anywhere."""
        plaintext = new_key()
        key = _row(name, role, plaintext)
        with self._writing() as session:
            session.add(key)
        log.info("api key created", extra={"key_id": key.id, "role": role})
        return _public(key), plaintext

    def authenticate(self, plaintext: str) -> ApiKeyPublic | None:
        """The key's record, or None when it is unknown or revoked."""
        digest = hash_key(plaintext)
        with self._reading() as session:
            key = session.scalars(select(ApiKey).where(col(ApiKey.key_hash) == digest)).one_or_none()
        if key is None or key.revoked_at is not None:
            return None
        public = _public(key)
        if used_long_ago(public):
            public.last_used_at = self.touch_key(public.id)
        return public

    def live_keys(self) -> dict[str, ApiKeyPublic]:
        """Every key not revoked, by its hash: what a process checks keys against in memory,
        so that an unknown key costs no database round trip."""
        with self._reading() as session:
            keys = session.scalars(select(ApiKey).where(col(ApiKey.revoked_at).is_(None))).all()
            return {key.key_hash: _public(key) for key in keys}

    def touch_key(self, key_id: int) -> datetime:
        """Record a use of the key now, unless one was recorded within LAST_USED_RESOLUTION."""
        now = utcnow()
        stale = now - LAST_USED_RESOLUTION
        with self._writing() as session:
            # Conditional, so replicas hit at the same moment write once between them.
            session.execute(
                update(ApiKey)
                .where(col(ApiKey.id) == key_id)
                .where(or_(col(ApiKey.last_used_at).is_(None), col(ApiKey.last_used_at) <= stale))
                .values(last_used_at=now)
            )
        return now

    def list_keys(self) -> list[ApiKeyPublic]:
        with self._reading() as session:
            keys = session.scalars(select(ApiKey).order_by(col(ApiKey.id))).all()
            return [_public(key) for key in keys]

    def revoke_key(self, key_id: int) -> ApiKeyPublic:
        """Revoke a key (idempotent); NotFound when there is no such key, Conflict when it
        is the last admin key, whose loss would leave nobody able to administer."""
        with self._writing() as session:
            # Serialised, so two admins revoking each other's keys at once keep one.
            self._lock(session)
            key = session.get(ApiKey, key_id, with_for_update=True)
            if key is None:
                raise NotFound(f"api key {key_id} not found")
            if key.revoked_at is None:
                if key.role == "admin" and not self._other_admins(session, key_id):
                    raise Conflict(
                        f"api key {key_id} is the last admin key; create another admin key before "
                        "revoking this one"
                    )
                key.revoked_at = utcnow()
        log.info("api key revoked", extra={"key_id": key_id})
        return _public(key)

    def ensure_first_admin(self, admin_key: str | None = None) -> str | None:
        """At the first start, create an admin key and return its plaintext, once.

        ``admin_key`` (FACEREC_ADMIN_KEY) becomes that key when given; otherwise one is
        generated. When any key exists already, nothing changes and None is returned.
        Several processes starting together create exactly one: the check and the
        insert run under the gallery_state row lock (SQLite: the write lock).
        """
        plaintext = admin_key.strip() if admin_key else new_key()
        if not plaintext:
            raise InvalidRequest("the admin key must not be empty")
        with self._writing() as session:
            self._lock(session)
            if session.scalars(select(col(ApiKey.id)).limit(1).with_for_update()).first() is not None:
                return None
            session.add(_row("admin", "admin", plaintext))
        if admin_key and len(plaintext) < SHORT_KEY:
            log.warning("the first admin key is shorter than %d characters", SHORT_KEY)
        log.info("first admin key created", extra={"from_env": bool(admin_key)})
        return plaintext

    @staticmethod
    def _other_admins(session: Session, key_id: int) -> bool:
        live_admins = select(col(ApiKey.id)).where(
            col(ApiKey.role) == "admin", col(ApiKey.revoked_at).is_(None), col(ApiKey.id) != key_id
        )
        return session.scalars(live_admins.limit(1)).first() is not None

    @staticmethod
    def _lock(session: Session) -> None:
        session.execute(select(col(GalleryState.id)).where(col(GalleryState.id) == 1).with_for_update())
