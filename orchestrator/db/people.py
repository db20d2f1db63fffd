"""People: create, read, search, update and delete."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from typing import cast as typed

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session
from sqlmodel import col

from orchestrator.core.errors import Conflict, NotFound
from orchestrator.db.listing import PeopleQuery, free_text, where_and_order
from orchestrator.db.state import bump_in
from orchestrator.db.store import Store, check_page, chunks, valid
from orchestrator.db.tables import (
    Face,
    FaceEmbedding,
    Person,
    PersonCreate,
    PersonPublic,
    PersonSummary,
    PersonUpdate,
    clean_address,
    clean_age,
    clean_attributes,
    clean_external_id,
    clean_gender,
    clean_name,
)
from orchestrator.db.types import utcnow

log = logging.getLogger(__name__)

FACE_ID = typed("Mapped[int]", Face.id)  # Optional on the model, never NULL in a row
PERSON_ID = typed("Mapped[int]", Person.id)
EMBEDDING_DTYPE = np.dtype("<f4")
RULES: dict[str, Callable[[Any], Any]] = {
    "name": clean_name,
    "external_id": clean_external_id,
    "age": clean_age,
    "gender": clean_gender,
    "address": clean_address,
}
"""The rule of each field a PATCH may set (``attributes`` has its own: null empties it)."""


@dataclass(frozen=True)
class NewFace:
    """A face to store with a new person: what :meth:`Faces.add_face` takes, as one record."""

    embedding: NDArray[np.float32]
    """[D] float32, L2-normalised."""
    model_version: str
    crop_png: bytes
    image_sha256: str
    quality: float
    det_score: float
    box: Sequence[float]


def _face_count() -> Any:
    return (
        select(func.count(col(Face.id)))
        .where(col(Face.person_id) == col(Person.id))
        .correlate(Person)
        .scalar_subquery()
    )


def _summary(person: Person) -> PersonSummary:
    assert person.id is not None  # flushed or loaded
    return PersonSummary(
        id=person.id,
        name=person.name,
        external_id=person.external_id,
        age=person.age,
        gender=person.gender,
        address=person.address,
        attributes=person.attributes,
    )


def _public(person: Person, face_count: int) -> PersonPublic:
    return PersonPublic(**dict(_summary(person)), face_count=face_count, created_at=person.created_at)


def _conflict(external_id: str | None) -> Conflict:
    return Conflict(f"external_id {external_id!r} belongs to another person")


def _new_person(data: PersonCreate) -> Person:
    now = utcnow()
    return Person(
        name=valid(clean_name, data.name),
        external_id=valid(clean_external_id, data.external_id),
        age=valid(clean_age, data.age),
        gender=valid(clean_gender, data.gender),
        address=valid(clean_address, data.address),
        attributes=valid(clean_attributes, data.attributes),
        created_at=now,
        updated_at=now,
    )


def _stored(person_id: int, face: NewFace) -> tuple[Face, bytes, int]:
    vector = np.asarray(face.embedding, dtype=EMBEDDING_DTYPE)
    if vector.ndim != 1 or vector.size == 0 or not np.isfinite(vector).all():
        raise ValueError(f"an embedding is a finite 1-D vector, got shape {vector.shape}")
    if len(face.box) != 4 or not face.model_version:
        raise ValueError("a face needs a box [x1, y1, x2, y2] and a model version")
    row = Face(
        person_id=person_id,
        model_version=face.model_version,
        crop_png=face.crop_png,
        image_sha256=face.image_sha256,
        quality=float(face.quality),
        det_score=float(face.det_score),
        box=[float(value) for value in face.box],
    )
    return row, vector.tobytes(), int(vector.size)


class People(Store):
    def create_person(self, data: PersonCreate) -> PersonPublic:
        """Insert a person. Conflict (409) when the external id is taken."""
        person = _new_person(data)
        try:
            with self._writing() as session:
                session.add(person)
        except IntegrityError:
            raise _conflict(person.external_id) from None
        return _public(person, 0)

    def create_person_with_faces(
        self, data: PersonCreate, faces: Sequence[NewFace]
    ) -> tuple[PersonPublic, list[int]]:
        """Insert a person with faces and their embeddings in one transaction: all or nothing.

        Returns the person and the new face ids, in the order of ``faces``. Conflict (409)
        when the external id is taken. The caller adds the vectors to the index.
        """
        person = _new_person(data)
        face_ids: list[int] = []
        try:
            with self._writing() as session:
                session.add(person)
                session.flush()
                assert person.id is not None
                for face in faces:
                    row, embedding, dim = _stored(person.id, face)
                    session.add(row)
                    session.flush()
                    assert row.id is not None
                    session.add(
                        FaceEmbedding(
                            face_id=row.id, model_version=face.model_version, embedding=embedding, dim=dim
                        )
                    )
                    face_ids.append(row.id)
        except IntegrityError:
            raise _conflict(person.external_id) from None
        return _public(person, len(face_ids)), face_ids

    def external_id_taken(self, external_id: str) -> bool:
        with self._reading() as session:
            found = session.scalar(select(PERSON_ID).where(col(Person.external_id) == external_id))
        return found is not None

    def get_person(self, person_id: int) -> PersonPublic:
        with self._reading() as session:
            row = session.execute(
                select(Person, _face_count()).where(col(Person.id) == person_id)
            ).one_or_none()
        if row is None:
            raise NotFound(f"person {person_id} not found")
        return _public(row[0], row[1])

    def list_people(
        self,
        q: str | None = None,
        limit: int = 50,
        offset: int = 0,
        *,
        query: PeopleQuery | None = None,
    ) -> tuple[list[PersonPublic], int]:
        """One page of people and the total that match.

        ``q`` is the free-text search; ``query`` the filters on single fields and the order
        (by id unless it says otherwise), all combined with AND.
        """
        check_page(limit, offset)
        conditions, order = where_and_order(query or PeopleQuery())
        if q and q.strip():
            conditions.append(free_text(q.strip()))
        page = select(Person, _face_count()).where(*conditions).order_by(*order).limit(limit).offset(offset)
        total = select(func.count()).select_from(Person).where(*conditions)
        with self._reading() as session:
            rows = session.execute(page).all()
            count = session.scalar(total) or 0
        return [_public(person, faces) for person, faces in rows], count

    def face_owners(self, face_ids: Sequence[int]) -> dict[int, PersonSummary]:
        """face id → the person it belongs to; ids no longer in the gallery are absent.

        The faces of one person share one record.
        """
        wanted = sorted({int(face_id) for face_id in face_ids})
        found: dict[int, PersonSummary] = {}
        people: dict[int, PersonSummary] = {}
        with self._reading() as session:
            for chunk in chunks(wanted):
                rows = session.execute(
                    select(FACE_ID, Person)
                    .join(Person, col(Person.id) == col(Face.person_id))
                    .where(col(Face.id).in_(chunk))
                )
                for face_id, person in rows:
                    assert person.id is not None
                    if person.id not in people:
                        people[person.id] = _summary(person)
                    found[face_id] = people[person.id]
        return found

    def update_person(self, person_id: int, data: PersonUpdate) -> PersonPublic:
        """Change the fields set in ``data``; ``attributes`` replaces the whole object."""
        fields = {name: getattr(data, name) for name in data.model_fields_set}
        values: dict[str, Any] = {
            name: valid(rule, fields[name]) for name, rule in RULES.items() if name in fields
        }
        if "attributes" in fields:
            values["attributes"] = valid(clean_attributes, fields["attributes"] or {})
        try:
            with self._writing() as session:
                person = self._locked(session, person_id)
                for name, value in values.items():
                    setattr(person, name, value)
                if values:
                    person.updated_at = utcnow()
                    # Recognition answers carry the person: cached ones and the face owners
                    # remembered per generation must not outlive any change of it.
                    bump_in(session)
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

    def delete_everyone(self) -> tuple[int, int]:
        """Delete every person with their faces and embeddings, in one transaction that also
        bumps the generation; returns how many (people, faces) went.

        A face enrolled at the same moment either commits first and goes too, or fails its
        foreign key after. Face ids are never reused, so the index can tell a deleted face by
        its id.
        """
        with self._writing() as session:
            # The database cascades from face to face_embedding (ON DELETE CASCADE). Through
            # the session's connection (same transaction): its result has the row counts.
            connection = session.connection()
            faces = connection.execute(delete(Face)).rowcount
            people = connection.execute(delete(Person)).rowcount
            bump_in(session)
        log.warning("every person deleted", extra={"people": people, "faces": faces})
        return int(people), int(faces)
