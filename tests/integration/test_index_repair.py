"""Repairing a serving collection in place: two real search shards and a real SQLite gallery."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from orchestrator.clients.search import SearchClient
from orchestrator.db import Gallery, default_database_url, make_engine, migrate
from orchestrator.db.tables import PersonCreate
from orchestrator.gallery.index_sync import Repair, put_vectors, repair_in_place
from search_service.checksum import checksum_of_ids
from search_service.schema import CollectionSpec
from tests.search_service.conftest import sharded_client, unit_vectors

pytestmark = pytest.mark.integration

DIM = 32
VERSION = "1"
COLLECTION = "arcface-v1-g2"
TOKEN = "search-token-for-tests-0123456789abcdef"


class DeletingGallery(Gallery):
    """Deletes ``victim`` from the database just after its embedding is read, as a
    concurrent face deletion would (its index delete finds nothing to delete yet)."""

    victim: int | None = None

    def embeddings_of(self, model_version: str, ids: Any) -> tuple[np.ndarray, np.ndarray]:
        found = super().embeddings_of(model_version, ids)
        if self.victim is not None and self.victim in found[0]:
            self.delete_face(self.victim)
        return found


class Spy:
    """The real client, slowed down between calls so searches run in the middle of a
    repair, and recording what it was asked to delete."""

    def __init__(self, inner: SearchClient) -> None:
        self.inner = inner
        self.deleted: list[int] = []
        self.after_listing: list[Any] = []

    async def delete(self, name: str, ids: Any) -> int:
        self.deleted += np.asarray(ids).tolist()
        await asyncio.sleep(0.02)
        return await self.inner.delete(name, ids)

    async def add(self, name: str, ids: Any, vectors: Any) -> int:
        await asyncio.sleep(0.02)
        return await self.inner.add(name, ids, vectors)

    async def ids(self, name: str) -> np.ndarray:
        listed = await self.inner.ids(name, page=16)
        while self.after_listing:
            await self.after_listing.pop()()
        return listed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def gallery(tmp_path: Path) -> Iterator[DeletingGallery]:
    engine = make_engine(default_database_url(tmp_path))
    migrate(engine)
    yield DeletingGallery(engine)
    engine.dispose()


@pytest.fixture
async def search(tmp_path: Path) -> AsyncIterator[SearchClient]:
    async with sharded_client(tmp_path / "search", 2, token=TOKEN) as client:
        await client.create_collection(COLLECTION, CollectionSpec(dim=DIM))
        yield client


def enrol(gallery: Gallery, vectors: np.ndarray) -> np.ndarray:
    """One person's faces with these ``vectors`` [n, DIM]; their face ids [n]."""
    person = gallery.create_person(PersonCreate(name="Repaired"))
    ids = []
    for i, vector in enumerate(vectors):
        crop = b"\x89PNG\r\n\x1a\n" + i.to_bytes(4, "big")
        face = gallery.add_face(
            person.id,
            embedding=vector,
            model_version=VERSION,
            crop_png=crop,
            image_sha256=hashlib.sha256(crop).hexdigest(),
            quality=0.9,
            det_score=0.99,
            box=[0, 0, 112, 112],
        )
        ids.append(face.face_id)
    return np.array(ids, dtype=np.int64)


class Drifted:
    """A gallery of 80 faces and a collection that lacks 12 of them and holds 9 ids the
    database does not: 5 deleted faces (an index delete lost) and 4 never known."""

    def __init__(self, gallery: Gallery) -> None:
        self.vectors = unit_vectors(np.random.default_rng(31), 85, DIM)
        ids = enrol(gallery, self.vectors)
        self.deleted = ids[80:]
        for face_id in self.deleted.tolist():
            gallery.delete_face(face_id)
        self.ids, self.vectors = ids[:80], self.vectors[:80]
        rng = np.random.default_rng(32)
        self.missing = np.sort(rng.choice(self.ids, 12, replace=False))
        self.kept = np.setdiff1d(self.ids, self.missing)
        self.strangers = np.array([10**6, 10**6 + 1, 10**9 + 7, 2**40], dtype=np.int64)

    async def load(self, search: SearchClient) -> None:
        rows = np.isin(self.ids, self.kept)
        await search.add(COLLECTION, self.ids[rows], self.vectors[rows])
        ghosts = np.concatenate([self.deleted, self.strangers])
        await search.add(COLLECTION, ghosts, unit_vectors(np.random.default_rng(33), ghosts.size, DIM))

    def vector(self, face_id: int) -> np.ndarray:
        return self.vectors[np.flatnonzero(self.ids == face_id)[0]]


async def test_repair_adds_the_missing_and_removes_the_extra_without_touching_the_rest(
    gallery: DeletingGallery, search: SearchClient
) -> None:
    drifted = Drifted(gallery)
    await drifted.load(search)
    assert (await search.info(COLLECTION)).count == 68 + 9
    spy = Spy(search)
    kept_probes = drifted.vectors[np.isin(drifted.ids, drifted.kept)]
    searches = 0

    async def every_kept_face_answers() -> None:
        nonlocal searches
        while not repair.done():
            hits = await search.search(COLLECTION, kept_probes, 1)
            assert [row[0].id for row in hits] == drifted.kept.tolist()
            searches += 1

    repair = asyncio.ensure_future(repair_in_place(gallery, cast(SearchClient, spy), COLLECTION, VERSION))
    await asyncio.gather(repair, every_kept_face_answers())
    assert repair.result() == Repair(added=12, removed=9)
    assert searches >= 3
    assert sorted(spy.deleted) == sorted([*drifted.deleted.tolist(), *drifted.strangers.tolist()])
    info = await search.info(COLLECTION)
    assert info.checksum == checksum_of_ids(gallery.face_ids(VERSION))
    # The added faces carry their stored embeddings: each finds itself.
    hits = await search.search(COLLECTION, np.stack([drifted.vector(i) for i in drifted.missing]), 1)
    assert [row[0].id for row in hits] == drifted.missing.tolist()
    assert await repair_in_place(gallery, search, COLLECTION, VERSION) == Repair(added=0, removed=0)


async def test_a_face_enrolled_in_the_middle_is_kept_not_re_added(
    gallery: DeletingGallery, search: SearchClient
) -> None:
    """An enrolment adds a missing face between the listing and the repair's add: the
    service refuses the batch with the repeated id (409) and the repair adds the others."""
    drifted = Drifted(gallery)
    await drifted.load(search)
    # Ids of shard 0 only: shard 1 takes its part of the refused add, which the retry
    # must then leave out as well.
    raced = drifted.missing[drifted.missing % 2 == 0][:2]
    assert raced.size == 2 and (drifted.missing % 2 == 1).any()
    spy = Spy(search)

    async def enrolment() -> None:
        await search.add(COLLECTION, raced, np.stack([drifted.vector(i) for i in raced]))

    spy.after_listing.append(enrolment)
    repair = await repair_in_place(gallery, cast(SearchClient, spy), COLLECTION, VERSION)
    assert repair == Repair(added=12, removed=9)
    assert not set(spy.deleted) & set(drifted.ids.tolist())
    assert (await search.info(COLLECTION)).checksum == checksum_of_ids(gallery.face_ids(VERSION))


async def test_a_face_deleted_while_it_is_added_does_not_stay_in_the_index(
    gallery: DeletingGallery, search: SearchClient
) -> None:
    drifted = Drifted(gallery)
    await drifted.load(search)
    gallery.victim = int(drifted.missing[3])
    repair = await repair_in_place(gallery, search, COLLECTION, VERSION)
    assert repair == Repair(added=12, removed=10)  # the victim went in and out again
    assert gallery.victim not in gallery.face_ids(VERSION)
    listed = await search.ids(COLLECTION)
    assert gallery.victim not in listed
    np.testing.assert_array_equal(listed, gallery.face_ids(VERSION))


async def test_writers_adding_the_same_faces_at_once_all_succeed_and_delete_nothing(
    search: SearchClient,
) -> None:
    """A rollout pass, a dual write and a repair may put one face at the same time."""
    vectors = unit_vectors(np.random.default_rng(41), 40, DIM)
    ids = list(range(1, 41))
    await search.add(COLLECTION, ids[5:10], vectors[5:10])  # some there already, on both shards
    spy = cast(SearchClient, Spy(search))
    await asyncio.gather(
        put_vectors(spy, COLLECTION, ids[:20], vectors[:20]),
        put_vectors(spy, COLLECTION, ids[10:], vectors[10:]),
        put_vectors(spy, COLLECTION, ids, vectors),
    )
    assert (await search.info(COLLECTION)).checksum == checksum_of_ids(ids)
    assert cast(Spy, spy).deleted == []
