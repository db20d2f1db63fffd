"""What is live: generation, model version, collection."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from orchestrator.db.store import Store
from orchestrator.db.tables import GalleryState, GalleryStatePublic
from orchestrator.db.types import utcnow


def _state(row: GalleryState) -> GalleryStatePublic:
    return GalleryStatePublic.model_validate(row, from_attributes=True)


def bump_in(session: Session) -> None:
    """Increment the generation inside a caller's transaction.

    Deletes and renames bump in the same transaction as the change, so a replica that
    remembers face owners per generation (``LiveView``) can never see the change without
    the new generation.
    """
    session.execute(
        update(GalleryState)
        .where(col(GalleryState.id) == 1)
        .values(generation=col(GalleryState.generation) + 1, updated_at=utcnow())
    )


class State(Store):
    def state(self) -> GalleryStatePublic:
        with self._reading() as session:
            row = session.get(GalleryState, 1)
            if row is None:
                raise RuntimeError("gallery_state has no row: the database is not migrated")
            return _state(row)

    def bump_generation(self) -> int:
        """Increment the gallery generation; returns the new value.

        Atomic across threads and processes: the increment happens in SQL under the row
        lock, and the value is read back in the same transaction.
        """
        with self._writing() as session:
            bump_in(session)
            generation = session.scalar(select(col(GalleryState.generation)).where(col(GalleryState.id) == 1))
        if generation is None:
            raise RuntimeError("gallery_state has no row: the database is not migrated")
        return int(generation)

    def set_active(self, model_version: str, collection: str) -> GalleryStatePublic:
        """Switch the live (model version, collection) pair at once; clears any pending one."""
        return self._set(
            active_model_version=model_version,
            active_collection=collection,
            pending_model_version=None,
            pending_collection=None,
        )

    def set_pending(self, model_version: str | None, collection: str | None) -> GalleryStatePublic:
        """Record (or with None, forget) the version a rollout is building."""
        return self._set(pending_model_version=model_version, pending_collection=collection)

    def _set(self, **values: Any) -> GalleryStatePublic:
        with self._writing() as session:
            row = session.get(GalleryState, 1, with_for_update=True)
            if row is None:
                raise RuntimeError("gallery_state has no row: the database is not migrated")
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
        return _state(row)
