"""Live state (generation, active version) and the recognition log."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import pytest

from orchestrator.core.errors import NotFound
from orchestrator.db import Gallery, make_engine
from orchestrator.db.tables import PersonCreate, PersonUpdate, RecognitionLog
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


def test_recognition_log(gallery: Gallery) -> None:
    _, _ = gallery.create_key("reader", "recognize")
    key = gallery.list_keys()[0]
    results: list[dict[str, Any]] = [
        {"decision": "match", "person_id": 7, "similarity": 0.8125},
        {"decision": "unknown", "person_id": None, "similarity": 0.125},
    ]
    gallery.log_recognitions(
        [
            RecognitionLog(
                image_sha256="0" * 64,
                face_count=2,
                results=results,
                model_version="1",
                took_ms=12.5,
                cached=False,
            ),
            RecognitionLog(
                image_sha256="1" * 64,
                face_count=0,
                results=[],
                model_version="1",
                took_ms=0.25,
                cached=True,
                api_key_id=key.id,
            ),
        ]
    )
    recent = gallery.recent_recognitions(limit=10)
    assert [entry.image_sha256[0] for entry in recent] == ["1", "0"]  # newest first, in batch order
    assert (recent[1].face_count, recent[1].results, recent[1].took_ms) == (2, results, 12.5)
    assert (recent[0].cached, recent[0].api_key_id, recent[0].face_count) == (True, key.id, 0)
    assert [entry.id for entry in gallery.recent_recognitions(limit=1)] == [recent[0].id]


def test_deletes_and_renames_bump_the_generation_in_their_transaction(gallery: Gallery) -> None:
    """What LiveView relies on: no change to who a face is without a new generation."""
    person = gallery.create_person(PersonCreate(name="Before"))
    faces = [enrol(gallery, person.id, vector, tag=i) for i, vector in enumerate(unit_vectors(2))]
    generation = gallery.state().generation
    gallery.update_person(person.id, PersonUpdate(attributes={"team": "blue"}))
    assert gallery.state().generation == generation  # nothing an answer shows
    gallery.update_person(person.id, PersonUpdate(name="After"))
    assert gallery.state().generation == generation + 1
    gallery.delete_face(faces[0])
    assert gallery.state().generation == generation + 2
    gallery.delete_person(person.id)
    assert gallery.state().generation == generation + 3


def test_a_failed_delete_leaves_the_generation(gallery: Gallery) -> None:
    generation = gallery.state().generation
    with pytest.raises(NotFound):
        gallery.delete_face(123456)
    with pytest.raises(NotFound):
        gallery.delete_person(123456)
    assert gallery.state().generation == generation
