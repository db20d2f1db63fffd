"""Rollout records: what a model switch is doing and who runs it, readable by every process.

A rollout is owned through a lease: its owner renews ``lease_expires_at`` while it works,
and every write of the runner is conditional on still owning it, so a process that lost
its lease (paused, partitioned, presumed dead) can change nothing any more. Once a lease
has expired any replica may claim the rollout and carry it on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, func, or_, select, update
from sqlmodel import col

from orchestrator.core.errors import Conflict, NotFound
from orchestrator.db.store import Store, check_page
from orchestrator.db.tables import ROLLOUT_FINISHED, GalleryState, Rollout, RolloutKind, RolloutPublic
from orchestrator.db.types import utcnow


class LeaseLost(Exception):
    """This process no longer owns the rollout: another one took it over."""


def _public(row: Rollout) -> RolloutPublic:
    assert row.id is not None
    return RolloutPublic(rollout_id=row.id, **row.model_dump(exclude={"id"}))


def _unfinished() -> Any:
    return col(Rollout.state).not_in(ROLLOUT_FINISHED)


class Rollouts(Store):
    def start_rollout(
        self,
        from_version: str,
        to_version: str,
        collection: str,
        *,
        from_collection: str = "",
        kind: RolloutKind = "rollout",
        reverses: int | None = None,
        owner: str | None = None,
        lease: timedelta = timedelta(0),
    ) -> RolloutPublic:
        """A new rollout in state ``pending``; Conflict while another one is unfinished.

        Serialised on every database by the lock on the one gallery-state row, which always
        exists: a ``FOR UPDATE`` on the unfinished rollouts alone locks nothing when there
        are none, and two starts at once would both pass on PostgreSQL.
        """
        with self._writing() as session:
            session.get(GalleryState, 1, with_for_update=True)
            running = session.scalars(select(Rollout).where(_unfinished()).with_for_update()).first()
            if running is not None:
                raise Conflict(
                    f"rollout {running.id} to version {running.to_version} is still {running.state}"
                )
            row = Rollout(
                from_version=from_version,
                to_version=to_version,
                collection=collection,
                from_collection=from_collection,
                kind=kind,
                reverses=reverses,
                owner=owner,
                lease_expires_at=utcnow() + lease if owner else None,
            )
            session.add(row)
            session.flush()
            return _public(row)

    def update_rollout(self, rollout_id: int, *, owner: str | None = None, **values: Any) -> RolloutPublic:
        """Set ``values``; with ``owner``, only while that process still owns it (else LeaseLost)."""
        with self._writing() as session:
            row = session.get(Rollout, rollout_id, with_for_update=True)
            if row is None:
                raise NotFound(f"rollout {rollout_id} does not exist")
            if owner is not None and row.owner != owner:
                raise LeaseLost(f"rollout {rollout_id} is now run by {row.owner}")
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            return _public(row)

    def renew_lease(self, rollout_id: int, owner: str, lease: timedelta) -> None:
        """Extend ``owner``'s lease; LeaseLost if the rollout is finished or owned by another."""
        with self._writing() as session:
            result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(Rollout)
                .where(col(Rollout.id) == rollout_id, col(Rollout.owner) == owner, _unfinished())
                .values(lease_expires_at=utcnow() + lease)
            )
            renewed = result.rowcount
        if renewed != 1:
            raise LeaseLost(f"rollout {rollout_id} is no longer owned by {owner}")

    def release_lease(self, rollout_id: int, owner: str) -> None:
        """Let the lease lapse now (a clean shutdown): another replica takes over at once."""
        with self._writing() as session:
            session.execute(
                update(Rollout)
                .where(col(Rollout.id) == rollout_id, col(Rollout.owner) == owner, _unfinished())
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )

    def claim_expired_rollout(
        self, owner: str, lease: timedelta, now: datetime | None = None
    ) -> RolloutPublic | None:
        """Take over the unfinished rollout whose lease has expired, if there is one.

        One conditional UPDATE: of several replicas claiming at once exactly one wins.
        """
        now = now or utcnow()
        with self._writing() as session:
            row = session.scalars(
                select(Rollout)
                .where(
                    _unfinished(),
                    or_(col(Rollout.lease_expires_at).is_(None), col(Rollout.lease_expires_at) < now),
                )
                .order_by(col(Rollout.id))
                .with_for_update()
            ).first()
            if row is None:
                return None
            row.owner = owner
            row.lease_expires_at = now + lease
            row.updated_at = now
            return _public(row)

    def get_rollout(self, rollout_id: int) -> RolloutPublic:
        with self._reading() as session:
            row = session.get(Rollout, rollout_id)
            if row is None:
                raise NotFound(f"rollout {rollout_id} does not exist")
            return _public(row)

    def unfinished_rollouts(self) -> list[RolloutPublic]:
        with self._reading() as session:
            rows = session.scalars(select(Rollout).where(_unfinished()))
            return [_public(row) for row in rows]

    def list_rollouts(self, limit: int = 20, offset: int = 0) -> tuple[list[RolloutPublic], int]:
        """Newest first: the latest rollout, finished or not, is the first."""
        check_page(limit, offset)
        with self._reading() as session:
            total = session.scalar(select(func.count()).select_from(Rollout)) or 0
            rows = session.scalars(
                select(Rollout).order_by(col(Rollout.id).desc()).limit(limit).offset(offset)
            ).all()
            return [_public(row) for row in rows], total
