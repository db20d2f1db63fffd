"""The score keeper against the real search service and a SQLite gallery, with random unit vectors.

With more neighbours than faces every search is exhaustive, so the scores kept through random
enrolments and deletions must be what a full recompute finds; and a face close to an enrolled
one of another person is caught as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from sqlalchemy import select

from orchestrator.clients.search import SearchClient
from orchestrator.db import Gallery
from orchestrator.db.face_scores import SCORES, FaceScoreRow
from orchestrator.db.tables import PersonCreate
from orchestrator.gallery.score_keeper import ScoreKeeper
from search_service.schema import CollectionSpec
from tests.integration import test_rollout_lease as lease

pytestmark = pytest.mark.integration

DIM = 32
VERSION = "1"
OPERATIONS = 100
SPREAD = 0.6
"""How far a person's faces lie from their centre: genuine above impostor scores, overlapping a little."""
Scores = dict[int, tuple[float | None, int | None, float | None, int | None]]


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


# The lease tests' fixtures: a search service of this module's own, and a SQLite gallery.
search_process, search, gallery = lease.search_process, lease.search, lease.gallery


@pytest.fixture
async def collection(search: SearchClient, request: pytest.FixtureRequest) -> str:
    name = f"scores-{request.node.name.replace('_', '-')[:40]}"
    await search.drop_collection(name, missing_ok=True)
    await search.create_collection(name, CollectionSpec(dim=DIM))
    return name


class Enroller:
    """Enrols and deletes as the enrolment does: the database, the index, then the keeper."""

    def __init__(self, gallery: Gallery, search: SearchClient, keeper: ScoreKeeper, collection: str) -> None:
        self.gallery, self.search, self.keeper, self.collection = gallery, search, keeper, collection
        self.crops = 0

    def _store(self, person_id: int, vector: np.ndarray) -> int:
        self.crops += 1
        return self.gallery.add_face(
            person_id,
            embedding=vector,
            model_version=VERSION,
            crop_png=b"png",
            image_sha256=f"{self.crops:064x}",
            quality=0.9,
            det_score=0.99,
            box=[0.0, 0.0, 10.0, 10.0],
        ).face_id

    async def enrol(self, person_id: int, vectors: list[np.ndarray]) -> list[int]:
        ids = [await asyncio.to_thread(self._store, person_id, vector) for vector in vectors]
        await self.search.add(self.collection, ids, np.stack(vectors))
        await self.keeper.enrolled(self.collection, VERSION, list(zip(ids, vectors, strict=True)))
        return ids

    async def forget(self, face_ids: list[int]) -> None:
        await self.search.delete(self.collection, face_ids)
        await self.keeper.deleted(self.collection, VERSION, face_ids)

    async def delete_face(self, face_id: int) -> None:
        await asyncio.to_thread(self.gallery.delete_face, face_id)
        await self.forget([face_id])

    async def delete_person(self, person_id: int) -> None:
        await self.forget(await asyncio.to_thread(self.gallery.delete_person, person_id))


def scores(gallery: Gallery) -> Scores:
    with gallery.engine.connect() as connection:
        rows = connection.execute(select(SCORES).where(SCORES.c.model_version == VERSION)).all()
    return {
        row.face_id: (row.impostor, row.impostor_face_id, row.genuine, row.genuine_face_id) for row in rows
    }


def faces_of(found: Scores) -> dict[int, tuple[int | None, int | None]]:
    return {face: (row[1], row[3]) for face, row in found.items()}


def similarities(found: Scores) -> list[float]:
    """Every score, impostor and genuine, in face order; NaN where there is none."""
    return [np.nan if score is None else score for face in sorted(found) for score in found[face][::2]]


async def test_scores_kept_through_enrolments_and_deletions_equal_a_recompute(
    gallery: Gallery, search: SearchClient, collection: str
) -> None:
    keeper = ScoreKeeper(gallery, search, neighbours=400)  # more than there will be faces
    enroller = Enroller(gallery, search, keeper, collection)
    rng = np.random.default_rng(18)
    centres: dict[int, np.ndarray] = {}
    faces: dict[int, list[int]] = {}

    def face_of(person: int) -> np.ndarray:
        return unit(centres[person] + SPREAD * unit(rng.standard_normal(DIM)))

    async def new_person(count: int) -> None:
        person = (await asyncio.to_thread(gallery.create_person, PersonCreate(name=f"P{len(centres)}"))).id
        centres[person] = unit(rng.standard_normal(DIM))
        # Several faces in one call too, as the one-call enrolment does.
        faces[person] = await enroller.enrol(person, [face_of(person) for _ in range(count)])

    kinds = ["new person", "new people's faces", "another face", "delete a face", "delete a person"]
    done: dict[str, int] = dict.fromkeys(kinds, 0)
    for _ in range(OPERATIONS):
        kind = str(rng.choice(kinds, p=[0.3, 0.1, 0.35, 0.15, 0.1])) if len(centres) > 3 else kinds[0]
        people = [person for person in faces if faces[person]]
        if kind == "new person":
            await new_person(1)
        elif kind == "new people's faces":
            await new_person(int(rng.integers(2, 5)))
        elif kind == "another face":
            person = int(rng.choice(people))
            faces[person] += await enroller.enrol(person, [face_of(person)])
        elif kind == "delete a face":
            person = int(rng.choice(people))
            face = faces[person].pop(int(rng.integers(len(faces[person]))))
            await enroller.delete_face(face)
        else:
            person = int(rng.choice(people))
            await enroller.delete_person(person)
            del faces[person], centres[person]
        done[kind] += 1
    assert all(done.values()), done
    enrolled = sorted(face for ids in faces.values() for face in ids)
    assert 40 <= len(enrolled) < 400

    kept = scores(gallery)
    assert sorted(kept) == enrolled
    assert sum(ids[0] is not None for ids in kept.values()) == len(enrolled)  # every face has an impostor
    assert sum(row[2] is not None for row in kept.values()) == sum(
        len(ids) for ids in faces.values() if len(ids) > 1
    )

    assert await keeper.recompute(collection, VERSION) == len(enrolled)
    recomputed = scores(gallery)
    assert faces_of(recomputed) == faces_of(kept)
    # Float32 inner products: a lone query and a batch may be summed in other orders.
    assert similarities(recomputed) == pytest.approx(similarities(kept), abs=1e-6, nan_ok=True)
    impostor, genuine = gallery.score_distribution(VERSION)
    assert sorted(impostor) == sorted(row[0] for row in kept.values() if row[0] is not None)
    assert sorted(genuine) == sorted(row[2] for row in kept.values() if row[2] is not None)
    assert np.mean(genuine) > np.mean(impostor)


async def test_a_near_duplicate_of_another_person_is_caught(
    gallery: Gallery, search: SearchClient, collection: str
) -> None:
    keeper = ScoreKeeper(gallery, search, neighbours=50)
    enroller = Enroller(gallery, search, keeper, collection)
    rng = np.random.default_rng(5)
    people = [gallery.create_person(PersonCreate(name=f"Person {i}")) for i in range(20)]
    vectors = {person.id: unit(rng.standard_normal(DIM)) for person in people}
    for person in people:
        await enroller.enrol(person.id, [vectors[person.id]])
    ada = people[7]
    again = unit(vectors[ada.id] + 0.05 * unit(rng.standard_normal(DIM)))
    similarity = float(again @ vectors[ada.id])
    assert 0.95 < similarity < 1.0

    found = await keeper.check_duplicate(collection, again, None, 0.9)
    assert found is not None
    owner, score = found
    assert (owner.id, owner.name) == (ada.id, "Person 7")
    assert score == pytest.approx(similarity, abs=1e-5)
    other = await keeper.check_duplicates(collection, np.stack([again, again]), people[0].id, 0.9)
    assert [(match[0].id if match else None) for match in other] == [ada.id, ada.id]
    # Ada herself may enrol it; so may anyone above a threshold it does not reach.
    assert await keeper.check_duplicate(collection, again, ada.id, 0.9) is None
    assert await keeper.check_duplicate(collection, again, None, similarity + 1e-3) is None
    # A face deleted from the gallery but left in the index (a failed index delete) is no one.
    await asyncio.to_thread(gallery.delete_person, ada.id)
    assert await keeper.check_duplicate(collection, again, None, 0.9) is None


async def test_keeping_never_fails_an_enrolment_or_a_deletion(
    gallery: Gallery, search: SearchClient, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = ScoreKeeper(gallery, search, neighbours=50)
    store = Enroller(gallery, search, keeper, "no-such-collection")._store
    vector = unit(np.ones(DIM))
    ada, bob = (gallery.create_person(PersonCreate(name=name)).id for name in ("Ada", "Bob"))
    a, b = store(ada, vector), store(bob, vector)
    gallery.put_face_scores(VERSION, [FaceScoreRow(b, 1.0, a)])
    with caplog.at_level(logging.WARNING, logger="orchestrator.gallery.score_keeper"):
        await keeper.enrolled("no-such-collection", VERSION, [(a, vector)])
        await keeper.deleted("no-such-collection", VERSION, [a])
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("a recompute mends" in warning for warning in warnings)
    assert scores(gallery) == {b: (1.0, a, None, None)}
