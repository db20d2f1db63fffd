"""Every person deleted at once, on every backend: one transaction, the generation bumped."""

from __future__ import annotations

from orchestrator.db import Gallery
from orchestrator.db.tables import Face, FaceEmbedding, PersonCreate
from tests.db.test_faces import enrol, rows, unit_vectors


def test_everyone_goes_with_their_faces_and_embeddings(gallery: Gallery) -> None:
    people = [gallery.create_person(PersonCreate(name=f"P{i}")).id for i in range(3)]
    vectors = unit_vectors(5)
    faces = [enrol(gallery, people[i % 2], vectors[i], tag=i) for i in range(5)]
    gallery.add_embeddings("2", faces[:2], vectors[:2])  # a second version's too
    generation = gallery.state().generation

    assert gallery.delete_everyone() == (3, 5)

    assert gallery.list_people()[1] == 0 and gallery.count_faces() == 0
    assert rows(gallery, Face) == rows(gallery, FaceEmbedding) == 0
    assert gallery.face_ids("1").size == gallery.face_ids("2").size == 0
    assert gallery.state().generation == generation + 1
    assert gallery.delete_everyone() == (0, 0)


def test_face_ids_are_not_reused_after_everyone_went(gallery: Gallery) -> None:
    person = gallery.create_person(PersonCreate(name="Ada")).id
    face = enrol(gallery, person, unit_vectors(1)[0])
    gallery.delete_everyone()
    # The index tells a deleted face by its id: a new face must not take an old one's.
    # (Person ids may start again at 1 on SQLite, whose person table has no AUTOINCREMENT.)
    again = gallery.create_person(PersonCreate(name="Ada")).id
    assert enrol(gallery, again, unit_vectors(1, seed=1)[0]) > face
