"""Index administration in-process: GET /v1/index, POST /v1/index/rebuild, DELETE /v1/people."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import httpx
import numpy as np
import pytest

from orchestrator.clients.search import SearchClient, SearchServiceError, SearchUnavailable
from orchestrator.core.resources import Resources
from orchestrator.db.gallery import Gallery
from orchestrator.db.tables import PersonCreate
from search_service.checksum import checksum_of_ids
from search_service.schema import CollectionInfo
from tests.api.conftest import Api, assert_problem
from tests.api.fakes import BOX, png

pytestmark = pytest.mark.unit


class Collections:
    """A search service holding named collections of ids, to see what is deleted from which."""

    def __init__(self, collections: dict[str, set[int]]) -> None:
        self.collections = collections
        self.failing = False
        self.before_listing: list[Any] = []
        """Called once each, in turn, when a collection is listed: writes that race the listing."""

    def _of(self, name: str) -> set[int]:
        if self.failing:
            raise SearchUnavailable(503, {"title": "ConnectError", "detail": "refused"}, "http://search")
        if name not in self.collections:
            raise SearchServiceError(404, {"title": "Not found", "detail": name}, "http://search")
        return self.collections[name]

    async def info(self, name: str) -> CollectionInfo:
        ids = self._of(name)
        return CollectionInfo(
            name=name,
            dim=512,
            count=len(ids),
            checksum=checksum_of_ids(sorted(ids)),
            index="hnsw",
            device="cpu",
            memory_bytes=len(ids) * 2048,
        )

    async def ids(self, name: str) -> np.ndarray:
        listed = self._of(name)
        if self.before_listing:
            await self.before_listing.pop(0)()
        return np.array(sorted(listed), np.int64)

    async def delete(self, name: str, ids: Any) -> int:
        held = self._of(name)
        gone = held & set(np.asarray(ids).tolist())
        held -= gone
        return len(gone)


def add_face(gallery: Gallery, person_id: int, version: str = "1") -> int:
    crop = png(112, 112)
    return gallery.add_face(
        person_id,
        embedding=np.full(512, 1 / np.sqrt(512), np.float32),
        model_version=version,
        crop_png=crop,
        image_sha256=hashlib.sha256(crop).hexdigest(),
        quality=0.9,
        det_score=0.99,
        box=BOX,
    ).face_id


@pytest.fixture
def gallery(api: Api) -> Gallery:
    resources: Resources = api.app.state.resources
    return resources.gallery


@pytest.fixture
def index(api: Api, gallery: Gallery) -> Iterator[Collections]:
    """The app's search service as :class:`Collections`: the live collection holds the seeded
    face and an orphan (a face deleted from the database whose index delete was lost)."""
    state = gallery.state()
    collections = Collections({state.active_collection: {api.seeded.face_id, 10**9}})
    resources: Resources = api.app.state.resources
    api.app.state.resources = replace(resources, search=cast(SearchClient, collections))
    yield collections
    api.app.state.resources = resources


async def test_the_index_beside_the_database(api: Api, admin: httpx.AsyncClient, gallery: Gallery) -> None:
    answer = await admin.get("/v1/index")
    assert answer.status_code == 200, answer.text
    status = answer.json()
    state = gallery.state()
    database = checksum_of_ids([api.seeded.face_id])
    assert status == {
        "collection": state.active_collection,
        "model_version": state.active_model_version,
        "index": "flat",
        "dim": 512,
        "count": 1,
        "database_count": 1,
        "database_checksum": database,
        "index_checksum": database,
        "in_agreement": True,
        "memory_bytes": status["memory_bytes"],
        "device": "cpu",
    }
    assert status["memory_bytes"] > 512 * 4


async def test_a_disagreeing_index_says_so(api: Api, admin: httpx.AsyncClient, index: Collections) -> None:
    status = (await admin.get("/v1/index")).json()
    assert (status["count"], status["database_count"], status["in_agreement"]) == (2, 1, False)
    assert status["index_checksum"] == checksum_of_ids([api.seeded.face_id, 10**9])
    assert (status["index"], status["memory_bytes"]) == ("hnsw", 2 * 2048)


async def test_without_the_search_service_the_index_is_a_503(
    admin: httpx.AsyncClient, index: Collections
) -> None:
    index.failing = True
    answer = await admin.get("/v1/index")
    assert_problem(answer, 503, "search service")
    assert answer.headers["retry-after"].isdigit()


async def test_a_rebuild_is_a_rollout_record_to_poll(admin: httpx.AsyncClient, gallery: Gallery) -> None:
    started = await admin.post("/v1/index/rebuild")
    assert started.status_code == 202, started.text
    record = started.json()
    state = gallery.state()
    assert record["kind"] == "rebuild" and record["state"] == "pending"
    assert record["from_version"] == record["to_version"] == state.active_model_version
    assert record["from_collection"] == state.active_collection != record["collection"]
    assert started.headers["location"] == f"/v1/models/rollouts/{record['rollout_id']}"
    polled = await admin.get(started.headers["location"])
    assert polled.status_code == 200 and polled.json() == record
    # It is unfinished: neither a second rebuild nor a rollout may start beside it.
    assert_problem(await admin.post("/v1/index/rebuild"), 409, f"rollout {record['rollout_id']}")
    assert_problem(await admin.post("/v1/models/rollouts", json={"version": "2"}), 409)


async def test_no_rebuild_beside_an_unfinished_rollout(admin: httpx.AsyncClient) -> None:
    assert (await admin.post("/v1/models/rollouts", json={"version": "2"})).status_code == 202
    answer = await admin.post("/v1/index/rebuild")
    assert_problem(answer, 409, "still pending")
    assert "location" not in answer.headers


@pytest.mark.parametrize(
    "params",
    [{}, {"confirm": "yes"}, {"confirm": "ALL"}, {"confirm": ""}, {"confirm_all": "all"}],
    ids=["missing", "yes", "upper-case", "empty", "misnamed"],
)
async def test_deleting_everyone_needs_confirm_all(
    admin: httpx.AsyncClient, gallery: Gallery, index: Collections, params: dict[str, str]
) -> None:
    before = gallery.state().generation, gallery.list_people()[1], dict(index.collections)
    problem = assert_problem(await admin.delete("/v1/people", params=params), 422, "confirm")
    assert problem["errors"][0]["loc"] == ["query", "confirm"]
    assert (gallery.state().generation, gallery.list_people()[1], index.collections) == before


async def test_a_recognize_key_deletes_nothing(
    api: Api, recognizer: httpx.AsyncClient, gallery: Gallery, index: Collections
) -> None:
    assert_problem(await recognizer.delete("/v1/people", params={"confirm": "all"}), 403)
    async with api.client() as anonymous:
        assert_problem(await anonymous.delete("/v1/people", params={"confirm": "all"}), 401)
    assert gallery.count_faces() == 1 and sum(map(len, index.collections.values())) == 2


async def test_deleting_everyone_empties_the_gallery_and_both_collections(
    api: Api, admin: httpx.AsyncClient, gallery: Gallery, index: Collections
) -> None:
    person = api.seeded.person_id
    second = add_face(gallery, person)
    state = gallery.set_pending("2", "arcface-v2-building")
    index.collections[state.active_collection].add(second)
    index.collections["arcface-v2-building"] = {api.seeded.face_id}
    generation = state.generation

    answer = await admin.delete("/v1/people", params={"confirm": "all"})

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"people": 1, "faces": 2, "vectors": 4}  # the orphan too
    assert index.collections == {state.active_collection: set(), "arcface-v2-building": set()}
    assert gallery.list_people() == ([], 0) and gallery.count_faces() == 0
    assert gallery.face_ids("1").size == 0
    assert gallery.state().generation >= generation + 2  # with the delete, then once emptied
    assert_problem(await admin.get(f"/v1/people/{person}"), 404)
    status = (await admin.get("/v1/index")).json()
    assert (status["count"], status["database_count"], status["in_agreement"]) == (0, 0, True)
    # Once more: nothing left to delete, and no error.
    again = await admin.delete("/v1/people", params={"confirm": "all"})
    assert again.json() == {"people": 0, "faces": 0, "vectors": 0}


async def test_a_face_enrolled_while_the_index_is_emptied_stays(
    admin: httpx.AsyncClient, gallery: Gallery, index: Collections
) -> None:
    live = gallery.state().active_collection
    enrolled: list[int] = []

    async def enrol_meanwhile() -> None:
        # After the database was emptied, before the collection is listed: an enrolment
        # writes the database, then the index, as Enrolment does.
        created = await asyncio.to_thread(gallery.create_person, PersonCreate(name="Grace Hopper"))
        enrolled.append(await asyncio.to_thread(add_face, gallery, created.id))
        index.collections[live].add(enrolled[0])

    index.before_listing.append(enrol_meanwhile)
    answer = await admin.delete("/v1/people", params={"confirm": "all"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"people": 1, "faces": 1, "vectors": 2}
    assert index.collections[live] == set(enrolled)
    assert gallery.face_ids("1").tolist() == enrolled


async def test_a_search_failure_leaves_the_gallery_empty_and_a_retry_finishes(
    admin: httpx.AsyncClient, gallery: Gallery, index: Collections
) -> None:
    live = gallery.state().active_collection
    generation = gallery.state().generation
    index.failing = True
    answer = await admin.delete("/v1/people", params={"confirm": "all"})
    assert_problem(answer, 503, "call again to finish")
    assert gallery.count_faces() == 0 and gallery.state().generation >= generation + 2
    assert len(index.collections[live]) == 2
    index.failing = False
    again = await admin.delete("/v1/people", params={"confirm": "all"})
    assert again.json() == {"people": 0, "faces": 0, "vectors": 2}
    assert index.collections[live] == set()


async def test_a_405_on_the_index_paths_names_their_methods(admin: httpx.AsyncClient) -> None:
    for path, allowed in [("/v1/index", "GET"), ("/v1/index/rebuild", "POST")]:
        answer = await admin.put(path)
        assert_problem(answer, 405)
        assert answer.headers["allow"] == allowed
    # DELETE /v1/people comes from this router, GET and POST from the people routers.
    answer = await admin.patch("/v1/people")
    assert_problem(answer, 405)
    assert answer.headers["allow"] == "DELETE, GET, POST"
