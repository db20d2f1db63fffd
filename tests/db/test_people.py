"""People: CRUD, validation, the q search and external id conflicts, on every backend."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.core.errors import Conflict, InvalidRequest, NotFound
from orchestrator.db import Gallery
from orchestrator.db.tables import PersonCreate, PersonUpdate


def test_create_get_update_delete(gallery: Gallery) -> None:
    created = gallery.create_person(
        PersonCreate(name="  Ada Lovelace ", external_id=" E-1 ", attributes={"age": 36, "gender": "f"})
    )
    assert (created.name, created.external_id, created.face_count) == ("Ada Lovelace", "E-1", 0)
    assert created.created_at.tzinfo is not None and created.created_at.utcoffset() == UTC.utcoffset(None)
    assert gallery.get_person(created.id) == created

    updated = gallery.update_person(created.id, PersonUpdate(attributes={"address": "London"}))
    assert (updated.name, updated.external_id, updated.attributes) == (
        "Ada Lovelace",
        "E-1",
        {"address": "London"},
    )
    renamed = gallery.update_person(created.id, PersonUpdate(name="Ada King", external_id=None))
    assert (renamed.name, renamed.external_id) == ("Ada King", None)
    assert gallery.get_person(created.id) == renamed

    assert gallery.delete_person(created.id) == []
    with pytest.raises(NotFound):
        gallery.get_person(created.id)
    with pytest.raises(NotFound):
        gallery.delete_person(created.id)
    with pytest.raises(NotFound):
        gallery.update_person(created.id, PersonUpdate(name="x"))


def test_unicode_and_nested_attributes_round_trip(gallery: Gallery) -> None:
    attributes = {"city": "Zürich", "tags": ["a", "b"], "address": {"street": "Bahnhofstr. 1", "zip": 8001}}
    person = gallery.create_person(PersonCreate(name="Zoë Ω", attributes=attributes))
    again = gallery.get_person(person.id)
    assert (again.name, again.attributes) == ("Zoë Ω", attributes)


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "   "},
        {"name": "x" * 201},
        {"name": "ok", "external_id": "e" * 201},
        {"name": "ok", "attributes": ["not", "an", "object"]},
        {"name": "ok", "attributes": {"blob": "x" * 17_000}},
        # PostgreSQL cannot store a NUL in text or JSON: refused on every backend alike.
        {"name": "Ada\x00"},
        {"name": "ok", "external_id": "e\x00"},
        {"name": "ok", "attributes": {"tags": ["a", "\x00"]}},
    ],
)
def test_invalid_person_is_refused(gallery: Gallery, fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PersonCreate.model_validate(fields)
    # Built without validation, the gallery still refuses it, as a 422.
    with pytest.raises(InvalidRequest):
        gallery.create_person(PersonCreate.model_construct(**{"attributes": {}, **fields}))
    assert gallery.list_people() == ([], 0)


def test_update_refuses_empty_name(gallery: Gallery) -> None:
    person = gallery.create_person(PersonCreate(name="Kept"))
    with pytest.raises(InvalidRequest):
        gallery.update_person(person.id, PersonUpdate.model_construct(name=" ", _fields_set={"name"}))
    with pytest.raises(InvalidRequest):
        gallery.update_person(person.id, PersonUpdate.model_construct(name=None, _fields_set={"name"}))
    assert gallery.get_person(person.id).name == "Kept"


def test_duplicate_external_id_conflicts_and_changes_nothing(gallery: Gallery) -> None:
    first = gallery.create_person(PersonCreate(name="First", external_id="EMP-7"))
    other = gallery.create_person(PersonCreate(name="Other", external_id="EMP-8"))
    with pytest.raises(Conflict):
        gallery.create_person(PersonCreate(name="Second", external_id="EMP-7"))
    with pytest.raises(Conflict):
        gallery.update_person(other.id, PersonUpdate(name="Renamed", external_id="EMP-7"))
    people, total = gallery.list_people()
    assert total == 2
    assert people == [first, other]  # the failed update did not rename "Other" either
    # Unique only when present: any number of people without an external id.
    for name in ("a", "b"):
        gallery.create_person(PersonCreate(name=name))
    assert gallery.list_people()[1] == 4


def test_external_id_is_compared_exactly(gallery: Gallery) -> None:
    gallery.create_person(PersonCreate(name="Upper", external_id="ABC"))
    lower = gallery.create_person(PersonCreate(name="Lower", external_id="abc"))
    assert lower.external_id == "abc"


@pytest.fixture
def crowd(gallery: Gallery) -> dict[str, int]:
    people = [
        PersonCreate(name="Alice Smith", external_id="EMP-1", attributes={"city": "Zürich", "age": 31}),
        PersonCreate(name="Bob_Jones", external_id="EMP-100%"),
        PersonCreate(name="Carol", attributes={"note": "50% off", "gender": "f"}),
        PersonCreate(name="Dave", external_id="emp_2", attributes={"address": {"street": "Main St"}}),
        PersonCreate(name="Élodie Martin", attributes={}),
    ]
    return {person.name: gallery.create_person(person).id for person in people}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (None, ["Alice Smith", "Bob_Jones", "Carol", "Dave", "Élodie Martin"]),
        ("   ", ["Alice Smith", "Bob_Jones", "Carol", "Dave", "Élodie Martin"]),
        ("alice", ["Alice Smith"]),
        ("SMITH", ["Alice Smith"]),
        ("emp-1", ["Alice Smith", "Bob_Jones"]),
        ("zür", ["Alice Smith"]),
        ("ZÜRICH", ["Alice Smith"]),
        ("élodie", ["Élodie Martin"]),
        ("main st", ["Dave"]),
        ("%", ["Bob_Jones", "Carol"]),
        ("0%", ["Bob_Jones", "Carol"]),
        ("_", ["Bob_Jones", "Dave"]),
        ("b_j", ["Bob_Jones"]),
        ("b%j", []),
        ("/", []),
        ("nobody", []),
    ],
)
def test_search(gallery: Gallery, crowd: dict[str, int], q: str | None, expected: list[str]) -> None:
    people, total = gallery.list_people(q=q, limit=100, offset=0)
    assert [person.name for person in people] == expected
    assert total == len(expected)


@pytest.fixture
def punctuated(gallery: Gallery) -> None:
    # Each name with a LIKE metacharacter has a twin with an ordinary character in its place:
    # a character that acted as a wildcard (or an escape) would find the twin too.
    people = [
        PersonCreate(name="50% Off"),
        PersonCreate(name="50X Off"),
        PersonCreate(name="snake_case"),
        PersonCreate(name="snakeXcase"),
        PersonCreate(name="AC/DC"),
        PersonCreate(name="ACXDC"),
        PersonCreate(name="back\\slash"),
        PersonCreate(name="backXslash"),
        PersonCreate(name="odd \\% mix"),
        PersonCreate(name="Path", attributes={"dir": "a/b_c%"}),
        PersonCreate(name="Twin", attributes={"dir": "aXbXcX"}),
    ]
    for person in people:
        gallery.create_person(person)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("%", ["50% Off", "odd \\% mix", "Path"]),
        ("0% o", ["50% Off"]),
        ("_", ["snake_case", "Path"]),
        ("e_c", ["snake_case"]),
        ("/", ["AC/DC", "Path"]),
        ("c/d", ["AC/DC"]),
        ("//", []),
        ("/%", []),
        ("\\", ["back\\slash", "odd \\% mix"]),
        ("k\\s", ["back\\slash"]),
        ("\\%", ["odd \\% mix"]),
        ("\\_", []),
        ("a/b_c%", ["Path"]),  # in the attributes' JSON cast to text
    ],
)
def test_search_reads_like_metacharacters_literally(
    gallery: Gallery, punctuated: None, q: str, expected: list[str]
) -> None:
    people, total = gallery.list_people(q=q, limit=100, offset=0)
    assert [person.name for person in people] == expected
    assert total == len(expected)


def test_paging_is_in_id_order_with_total(gallery: Gallery, crowd: dict[str, int]) -> None:
    ids = sorted(crowd.values())
    pages = [gallery.list_people(limit=2, offset=offset) for offset in (0, 2, 4, 6)]
    assert [[person.id for person in page] for page, _ in pages] == [ids[:2], ids[2:4], ids[4:], []]
    assert {total for _, total in pages} == {5}
    with pytest.raises(InvalidRequest):
        gallery.list_people(limit=0)
    with pytest.raises(InvalidRequest):
        gallery.list_people(offset=-1)
