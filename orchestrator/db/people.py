"""People: create, read, search, update and delete."""

from __future__ import annotations

import logging
from typing import Any
from typing import cast as typed

from sqlalchemy import ColumnElement, Text, cast, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session
from sqlmodel import col

from orchestrator.core.errors import Conflict, InvalidRequest, NotFound
from orchestrator.db.state import bump_in
from orchestrator.db.store import Store, valid
from orchestrator.db.tables import (
    Face,
    Person,
    PersonCreate,
    PersonPublic,
    PersonUpdate,
    clean_attributes,
    clean_external_id,
    clean_name,
)
from orchestrator.db.types import utcnow

log = logging.getLogger(__name__)

FACE_ID = typed("Mapped[int]", Face.id)  # Optional on the model, never NULL in a row
MAX_PAGE = 1000


def _face_count() -> Any:
    return (
        select(func.count(col(Face.id)))
        .where(col(Face.person_id) == col(Person.id))
        .correlate(Person)
        .scalar_subquery()
    )


def _public(person: Person, face_count: int) -> PersonPublic:
    assert person.id is not None  # flushed or loaded
    return PersonPublic(
        id=person.id,
        name=person.name,
        external_id=person.external_id,
        attributes=person.attributes,
        face_count=face_count,
        created_at=person.created_at,
    )


def _matches(q: str) -> ColumnElement[bool]:
    """Case-insensitive substring of the name, the external id or the attributes' JSON.

    The same SQL on the three databases: ``lower(x) LIKE '%q%' ESCAPE '/'``, with ``%``, ``_``
    and ``/`` in ``q`` escaped by SQLAlchemy (autoescape). Its escape character is ``/``, not a
    backslash, which MySQL would also read as an escape in string literals. JSON is cast to
    text, so keys match as well as values (searching "age" finds everyone with an age), a
    price paid for portability.
    """
    columns: list[Any] = [col(Person.name), col(Person.external_id), cast(col(Person.attributes), Text)]
    return or_(*(func.lower(column).contains(q.lower(), autoescape=True) for column in columns))


def _conflict(external_id: str | None) -> Conflict:
    return Conflict(f"external_id {external_id!r} belongs to another person")


class People(Store):
    def create_person(self, data: PersonCreate) -> PersonPublic:
        """Insert a person. Conflict (409) when the external id is taken."""
        now = utcnow()
        person = Person(
            name=valid(clean_name, data.name),
            external_id=valid(clean_external_id, data.external_id),
            attributes=valid(clean_attributes, data.attributes),
            created_at=now,
            updated_at=now,
        )
        try:
            with self._writing() as session:
                session.add(person)
        except IntegrityError:
            raise _conflict(person.external_id) from None
        return _public(person, 0)

    def get_person(self, person_id: int) -> PersonPublic:
        with self._reading() as session:
            row = session.execute(
                select(Person, _face_count()).where(col(Person.id) == person_id)
            ).one_or_none()
        if row is None:
            raise NotFound(f"person {person_id} not found")
        return _public(row[0], row[1])

    def list_people(
        self, q: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[PersonPublic], int]:
        """One page of people in id order, and the total that match ``q``."""
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise InvalidRequest(f"limit must be 1..{MAX_PAGE} and offset at least 0")
        where = _matches(q.strip()) if q and q.strip() else None
        page = select(Person, _face_count()).order_by(col(Person.id)).limit(limit).offset(offset)
        total = select(func.count()).select_from(Person)
        if where is not None:
            page, total = page.where(where), total.where(where)
        with self._reading() as session:
            rows = session.execute(page).all()
            count = session.scalar(total) or 0
        return [_public(person, faces) for person, faces in rows], count

    def update_person(self, person_id: int, data: PersonUpdate) -> PersonPublic:
        """Change the fields set in ``data``; ``attributes`` replaces the whole object."""
        fields = data.model_dump(exclude_unset=True)
        values: dict[str, Any] = {}
        if "name" in fields:
            values["name"] = valid(clean_name, fields["name"])
        if "external_id" in fields:
            values["external_id"] = valid(clean_external_id, fields["external_id"])
        if "attributes" in fields:
            values["attributes"] = valid(clean_attributes, fields["attributes"] or {})
        try:
            with self._writing() as session:
                person = self._locked(session, person_id)
                for name, value in values.items():
                    setattr(person, name, value)
                if values:
                    person.updated_at = utcnow()
                if "name" in values:
                    bump_in(session)  # answers name people: cached ones must not outlive a rename
                session.flush()
                faces = session.scalar(
                    select(func.count(col(Face.id))).where(col(Face.person_id) == person_id)
                )
        except IntegrityError:
            raise _conflict(values.get("external_id")) from None
        return _public(person, faces or 0)

    def delete_person(self, person_id: int) -> list[int]:
        """Delete a person with its faces and embeddings; the removed face ids, ascending."""
        with self._writing() as session:
            self._locked(session, person_id)
            face_ids = list(
                session.scalars(select(FACE_ID).where(col(Face.person_id) == person_id).order_by(FACE_ID))
            )
            # The database cascades to face and face_embedding (ON DELETE CASCADE).
            session.execute(delete(Person).where(col(Person.id) == person_id))
            bump_in(session)
        log.info("person deleted", extra={"person_id": person_id, "faces": len(face_ids)})
        return face_ids

    @staticmethod
    def _locked(session: Session, person_id: int) -> Person:
        # FOR UPDATE: a face enrolled at the same moment either commits first (and is
        # listed) or waits and then fails its foreign key.
        person = session.get(Person, person_id, with_for_update=True)
        if person is None:
            raise NotFound(f"person {person_id} not found")
        return person
