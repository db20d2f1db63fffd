"""Typed person fields on every backend: revision 0003's carry-over, validation, people with faces."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from pydantic import ValidationError
from sqlalchemy import func, select

from orchestrator.core.errors import Conflict, InvalidRequest
from orchestrator.db import Gallery, make_engine
from orchestrator.db.engine import alembic_config
from orchestrator.db.people import NewFace
from orchestrator.db.tables import Face, FaceEmbedding, PersonCreate, PersonUpdate
from orchestrator.db.types import Json
from tests.db.conftest import BACKENDS, fresh_database
from tests.db.test_faces import enrol, rows, unit_vectors

WRITTEN = datetime(2026, 1, 1)
# Attributes written under revision 0002, and what 0003 makes of them:
# (age, gender, address) in the columns, and what stays in the attributes.
CARRIED: list[tuple[dict[str, Any], tuple[Any, Any, Any], dict[str, Any]]] = [
    (
        {"age": 36, "gender": "f", "address": " 1 Main St ", "city": "Zürich"},
        (36, "f", "1 Main St"),
        {"city": "Zürich"},
    ),
    ({"age": "41", "gender": "Nữ"}, (41, "Nữ", None), {}),
    ({"age": 30.0}, (30, None, None), {}),
    # Not valid for a column: kept as they were, nothing lost.
    (
        {"age": 151, "gender": "x" * 33, "address": {"street": "Main St"}},
        (None, None, None),
        {"age": 151, "gender": "x" * 33, "address": {"street": "Main St"}},
    ),
    (
        {"age": True, "gender": "  ", "address": ""},
        (None, None, None),
        {"age": True, "gender": "  ", "address": ""},
    ),
    ({"age": 7.5, "gender": 1, "Age": 3}, (None, None, None), {"age": 7.5, "gender": 1, "Age": 3}),
    ({"age": -1, "address": "Huế"}, (None, None, "Huế"), {"age": -1}),
    ({}, (None, None, None), {}),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_revision_0003_carries_the_fields_over_from_attributes(backend: str, tmp_path: Path) -> None:
    """People written under revision 0002, migrated to 0003, and back to 0002."""
    person = sa.table(
        "person",
        sa.column("id", sa.Integer()),
        sa.column("name", sa.String()),
        sa.column("attributes", Json),
        sa.column("created_at", sa.DateTime()),
        sa.column("updated_at", sa.DateTime()),
    )
    with fresh_database(backend, tmp_path) as url:
        engine = make_engine(url)
        try:
            config = alembic_config()
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "0002")
                connection.execute(
                    person.insert(),
                    [
                        {
                            "id": i,
                            "name": f"p{i}",
                            "attributes": attributes,
                            "created_at": WRITTEN,
                            "updated_at": WRITTEN,
                        }
                        for i, (attributes, _, _) in enumerate(CARRIED, 1)
                    ],
                )
                command.upgrade(config, "0003")
                found = connection.execute(
                    sa.text("SELECT id, age, gender, address FROM person ORDER BY id")
                ).all()
                kept = dict(connection.execute(select(person.c.id, person.c.attributes)).all())
            assert [(row.age, row.gender, row.address) for row in found] == [
                fields for _, fields, _ in CARRIED
            ]
            assert [kept[i] for i in range(1, len(CARRIED) + 1)] == [rest for _, _, rest in CARRIED]

            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.downgrade(config, "0002")
                back = dict(connection.execute(select(person.c.id, person.c.attributes)).all())
            assert back[1] == {"age": 36, "gender": "f", "address": "1 Main St", "city": "Zürich"}
            assert back[4] == CARRIED[3][0] and back[7] == {"age": -1, "address": "Huế"}
        finally:
            engine.dispose()


def test_typed_fields_round_trip(gallery: Gallery) -> None:
    person = gallery.create_person(PersonCreate(name="Ann", age=0, gender=" Nữ ", address=" 5 Trần Phú "))
    assert (person.age, person.gender, person.address) == (0, "Nữ", "5 Trần Phú")
    assert gallery.get_person(person.id) == person
    changed = gallery.update_person(person.id, PersonUpdate(age=150, address=None))
    assert (changed.age, changed.gender, changed.address) == (150, "Nữ", None)
    blanked = gallery.update_person(person.id, PersonUpdate(gender="   "))
    assert blanked.gender is None
    assert gallery.update_person(person.id, PersonUpdate()).model_dump() == blanked.model_dump()


@pytest.mark.parametrize(
    "fields",
    [
        {"age": 151},
        {"age": -1},
        {"age": "30"},
        {"age": True},
        {"gender": "g" * 33},
        {"address": "a" * 501},
        {"gender": "a\x00"},
    ],
)
def test_invalid_typed_fields_are_refused(gallery: Gallery, fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PersonCreate.model_validate({"name": "X", **fields})
    with pytest.raises(ValidationError):
        PersonUpdate.model_validate(fields)
    with pytest.raises(InvalidRequest):
        gallery.create_person(PersonCreate.model_construct(name="X", attributes={}, **fields))
    person = gallery.create_person(PersonCreate(name="Kept", age=5))
    with pytest.raises(InvalidRequest):
        gallery.update_person(person.id, PersonUpdate.model_construct(_fields_set=set(fields), **fields))
    assert gallery.get_person(person.id).age == 5


def test_every_change_of_a_person_bumps_the_generation(gallery: Gallery) -> None:
    """Answers carry the whole person: a cached one must not outlive a change of any field."""
    person = gallery.create_person(PersonCreate(name="Ann"))
    for change in (
        PersonUpdate(age=3),
        PersonUpdate(gender="f"),
        PersonUpdate(address="x"),
        PersonUpdate(attributes={"k": 1}),
        PersonUpdate(external_id="E"),
        PersonUpdate(name="Anne"),
    ):
        before = gallery.state().generation
        gallery.update_person(person.id, change)
        assert gallery.state().generation == before + 1, change
    before = gallery.state().generation
    gallery.update_person(person.id, PersonUpdate())
    assert gallery.state().generation == before


def new_faces(n: int) -> list[NewFace]:
    return [
        NewFace(
            embedding=vector,
            model_version="1",
            crop_png=b"png%d" % i,
            image_sha256=hashlib.sha256(b"%d" % i).hexdigest(),
            quality=0.5,
            det_score=0.9,
            box=[0, 0, 10, 10],
        )
        for i, vector in enumerate(unit_vectors(n, seed=7))
    ]


def test_a_person_with_faces_is_written_whole_or_not_at_all(gallery: Gallery) -> None:
    person, face_ids = gallery.create_person_with_faces(
        PersonCreate(name="Grace", external_id="G-1", age=85), new_faces(3)
    )
    assert person.face_count == 3 and len(set(face_ids)) == 3
    assert [face.face_id for face in gallery.list_faces(person.id)] == face_ids
    assert gallery.face_image(face_ids[1]) == b"png1"
    stored = gallery.embeddings_of("1", face_ids)[1]
    np.testing.assert_array_equal(stored, unit_vectors(3, seed=7))

    with pytest.raises(Conflict):
        gallery.create_person_with_faces(PersonCreate(name="Twin", external_id="G-1"), new_faces(2))
    assert gallery.list_people()[1] == 1
    assert (rows(gallery, Face), rows(gallery, FaceEmbedding)) == (3, 3)
    broken = [*new_faces(1), NewFace(np.zeros((2, 2), np.float32), "1", b"", "0" * 64, 0, 0, [0, 0, 1, 1])]
    with pytest.raises(ValueError):
        gallery.create_person_with_faces(PersonCreate(name="Broken"), broken)
    assert gallery.list_people()[1] == 1
    assert gallery.external_id_taken("G-1") and not gallery.external_id_taken("g-1")


def test_face_owners_carry_the_public_person(gallery: Gallery) -> None:
    ann = gallery.create_person(PersonCreate(name="Ann", age=30, attributes={"k": [1]}))
    bob = gallery.create_person(PersonCreate(name="Bob", gender="m"))
    a1, a2 = (enrol(gallery, ann.id, v, tag=i) for i, v in enumerate(unit_vectors(2)))
    b1 = enrol(gallery, bob.id, unit_vectors(1, seed=5)[0], tag=9)
    owners = gallery.face_owners([a1, a2, b1, 10**9])
    assert set(owners) == {a1, a2, b1}
    assert owners[a1] is owners[a2]  # one record per person
    assert owners[a1].model_dump() == {
        "id": ann.id,
        "name": "Ann",
        "external_id": None,
        "age": 30,
        "gender": None,
        "address": None,
        "attributes": {"k": [1]},
    }
    assert (owners[b1].id, owners[b1].gender) == (bob.id, "m")
    with gallery.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Face)) == 3
