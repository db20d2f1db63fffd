"""Rollout records: what a model switch is doing, readable by every orchestrator process."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import col

from orchestrator.core.errors import Conflict, NotFound
from orchestrator.db.store import Store
from orchestrator.db.tables import ROLLOUT_FINISHED, Rollout, RolloutPublic
from orchestrator.db.types import utcnow


def _public(row: Rollout) -> RolloutPublic:
    assert row.id is not None
    return RolloutPublic(rollout_id=row.id, **row.model_dump(exclude={"id"}))


class Rollouts(Store):
    def start_rollout(self, from_version: str, to_version: str, collection: str) -> RolloutPublic:
        """A new rollout in state ``pending``; Conflict while another one is unfinished."""
        with self._writing() as session:
            running = session.scalars(
                select(Rollout).where(col(Rollout.state).not_in(ROLLOUT_FINISHED)).with_for_update()
            ).first()
            if running is not None:
                raise Conflict(
                    f"rollout {running.id} to version {running.to_version} is still {running.state}"
                )
            row = Rollout(from_version=from_version, to_version=to_version, collection=collection)
            session.add(row)
            session.flush()
            return _public(row)

    def update_rollout(self, rollout_id: int, **values: Any) -> RolloutPublic:
        with self._writing() as session:
            row = session.get(Rollout, rollout_id, with_for_update=True)
            if row is None:
                raise NotFound(f"rollout {rollout_id} does not exist")
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            return _public(row)

    def get_rollout(self, rollout_id: int) -> RolloutPublic:
        with self._reading() as session:
            row = session.get(Rollout, rollout_id)
            if row is None:
                raise NotFound(f"rollout {rollout_id} does not exist")
            return _public(row)

    def unfinished_rollouts(self) -> list[RolloutPublic]:
        with self._reading() as session:
            rows = session.scalars(select(Rollout).where(col(Rollout.state).not_in(ROLLOUT_FINISHED)))
            return [_public(row) for row in rows]
