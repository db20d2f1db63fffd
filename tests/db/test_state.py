"""Live state: generation, active version and collection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from orchestrator.core.errors import NotFound
from orchestrator.db import Gallery, make_engine
from orchestrator.db.tables import PersonCreate, PersonUpdate
from tests.db.test_faces import enrol, unit_vectors

THREADS = 8
BUMPS = 25


def test_first_state(gallery: Gallery) -> None:
    state = gallery.state()
    assert (state.generation, state.active_model_version, state.active_collection) == (
        1,
        "1",
        "arcface-v1-g1",
    )
    assert state.pending_model_version is None


def test_generation_increments_atomically_under_concurrency(gallery: Gallery, database_url: str) -> None:
    """8 threads, each on its own engine (as separate processes would be), 25 bumps each."""
    start = gallery.state().generation
    barrier = Barrier(THREADS)

    def bump_many() -> list[int]:
        engine = make_engine(database_url)
        try:
            own = Gallery(engine)
            barrier.wait()
            return [own.bump_generation() for _ in range(BUMPS)]
        finally:
            engine.dispose()

    with ThreadPoolExecutor(THREADS) as pool:
        seen = [value for values in pool.map(lambda _: bump_many(), range(THREADS)) for value in values]
    assert gallery.state().generation == start + THREADS * BUMPS
    # Each bump read back its own value: no two callers were handed the same generation.
    assert sorted(seen) == list(range(start + 1, start + THREADS * BUMPS + 1))


def test_set_active_and_pending(gallery: Gallery) -> None:
    pending = gallery.set_pending("2", "arcface-v2-g1")
    assert (pending.pending_model_version, pending.active_model_version) == ("2", "1")
    active = gallery.set_active("2", "arcface-v2-g1")
    assert (active.active_model_version, active.active_collection) == ("2", "arcface-v2-g1")
    assert (active.pending_model_version, active.pending_collection) == (None, None)
    assert gallery.state() == active
    assert active.updated_at >= pending.updated_at


def test_deletes_and_person_changes_bump_the_generation_in_their_transaction(gallery: Gallery) -> None:
    """What LiveView relies on: no change to who a face is without a new generation."""
    person = gallery.create_person(PersonCreate(name="Before"))
    faces = [enrol(gallery, person.id, vector, tag=i) for i, vector in enumerate(unit_vectors(2))]
    generation = gallery.state().generation
    gallery.update_person(person.id, PersonUpdate())
    assert gallery.state().generation == generation  # nothing changed
    gallery.update_person(person.id, PersonUpdate(attributes={"team": "blue"}))
    assert gallery.state().generation == generation + 1  # answers carry the person's fields
    gallery.update_person(person.id, PersonUpdate(name="After"))
    assert gallery.state().generation == generation + 2
    gallery.delete_face(faces[0])
    assert gallery.state().generation == generation + 3
    gallery.delete_person(person.id)
    assert gallery.state().generation == generation + 4


def test_a_failed_delete_leaves_the_generation(gallery: Gallery) -> None:
    generation = gallery.state().generation
    with pytest.raises(NotFound):
        gallery.delete_face(123456)
    with pytest.raises(NotFound):
        gallery.delete_person(123456)
    assert gallery.state().generation == generation
