"""A face of someone enrolled already, enrolled to another person: 409 naming them, unless forced.

The real :class:`Enrolment` and :class:`ScoreKeeper` over the SQLite gallery, the fake pipeline
of ``test_people_fields`` (the same photo, the same vector) and an index that searches by brute
force; the whole stack does the same with real photos in ``tests/e2e/test_duplicates.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import httpx
import numpy as np
import pytest

from orchestrator.clients.search import SearchClient
from orchestrator.core.resources import Resources
from orchestrator.gallery.enrolment import Enrolment
from orchestrator.gallery.score_keeper import ScoreKeeper
from orchestrator.pipeline.face_pipeline import FacePipeline
from search_service.schema import Hit
from tests.api.conftest import Api, assert_problem
from tests.api.test_people_fields import FakeIndex, FakePipeline, files, form, photo

pytestmark = pytest.mark.unit

DUPLICATE = "https://facerec.dev/problems/duplicate-identity"


class SearchedIndex(FakeIndex):
    """The fake index, with its vectors kept and searched exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.vectors: dict[int, np.ndarray] = {}

    async def add(self, name: str, ids: Any, vectors: Any) -> int:
        added = await super().add(name, ids, vectors)
        self.vectors.update(zip((int(i) for i in ids), np.asarray(vectors, np.float32), strict=True))
        return added

    async def delete(self, name: str, ids: Any) -> int:
        for face_id in ids:
            self.vectors.pop(int(face_id), None)
        return await super().delete(name, ids)

    async def search(self, name: str, queries: Any, k: int) -> list[list[Hit]]:
        ids = sorted(self.vectors)
        matrix = np.stack([self.vectors[i] for i in ids]) if ids else np.empty((0, 512), np.float32)
        hits = []
        for query in np.atleast_2d(np.asarray(queries, np.float32)):
            scores = matrix @ query
            best = sorted(zip(ids, scores.tolist(), strict=True), key=lambda hit: (-hit[1], hit[0]))[:k]
            hits.append([Hit(id=i, score=s) for i, s in best])
        return hits


@pytest.fixture
def index(api: Api) -> SearchedIndex:
    resources: Resources = api.app.state.resources
    fake = SearchedIndex()
    search = cast(SearchClient, fake)
    scores = ScoreKeeper(resources.gallery, search, neighbours=10)
    enrolment = Enrolment(resources.gallery, search, cast(FacePipeline, FakePipeline()), scores=scores)
    enrolment._gate = lambda *args, **kwargs: None  # type: ignore[method-assign]
    api.app.state.resources = replace(resources, enrolment=enrolment, scores=scores)
    return fake


async def people(admin: httpx.AsyncClient) -> int:
    return int((await admin.get("/v1/people")).json()["total"])


async def test_a_second_name_for_an_enrolled_face_is_refused_naming_the_first(
    api: Api, admin: httpx.AsyncClient, index: SearchedIndex
) -> None:
    ada_photo, other_photo = photo(shade=60), photo(shade=170)
    created = await admin.post("/v1/people", data=form(name="Ada", age="36"), files=files(ada_photo))
    assert created.status_code == 201, created.text
    ada = created.json()
    before = (await people(admin), set(index.held))

    twice = await admin.post("/v1/people", data=form(name="Augusta"), files=files(other_photo, ada_photo))
    problem = assert_problem(twice, 409, f"'Ada' (person {ada['id']})")
    assert problem["type"] == DUPLICATE and "file 2 ('p2.png')" in problem["detail"]
    assert problem["person"] == {
        "id": ada["id"],
        "name": "Ada",
        "external_id": None,
        "age": 36,
        "gender": None,
        "address": None,
        "attributes": {},
    }
    assert problem["similarity"] == pytest.approx(1.0)
    assert (await people(admin), index.held) == before

    # Another photo of hers, to her: fine.
    face = await admin.post(f"/v1/people/{ada['id']}/faces", files={"file": ("a.png", ada_photo)})
    assert face.status_code == 201, face.text
    # To someone else: refused, unless an admin forces it.
    seeded = api.seeded.person_id
    refused = await admin.post(f"/v1/people/{seeded}/faces", files={"file": ("a.png", ada_photo)})
    assert assert_problem(refused, 409, "force=true")["person"]["id"] == ada["id"]
    forced = await admin.post(
        f"/v1/people/{seeded}/faces", files={"file": ("a.png", ada_photo)}, params={"force": "true"}
    )
    assert forced.status_code == 201, forced.text
    both = await admin.post(
        "/v1/people", data=form(name="Augusta"), files=files(other_photo, ada_photo), params={"force": True}
    )
    assert both.status_code == 201, both.text
    assert await people(admin) == before[0] + 1


async def test_enrolments_and_deletions_keep_the_scores(
    api: Api, admin: httpx.AsyncClient, index: SearchedIndex
) -> None:
    gallery = cast(Resources, api.app.state.resources).gallery
    enrolled = {}
    for name, shades in (("Ada", (10, 20)), ("Bob", (30,))):
        answer = await admin.post(
            "/v1/people", data=form(name=name), files=files(*(photo(shade=s) for s in shades))
        )
        assert answer.status_code == 201, answer.text
        enrolled[name] = [face["face_id"] for face in answer.json()["faces"]]
    impostor, genuine = gallery.score_distribution("1")
    assert (len(impostor), len(genuine)) == (3, 2)
    assert (await admin.delete(f"/v1/faces/{enrolled['Ada'][0]}")).status_code == 204
    impostor, genuine = gallery.score_distribution("1")
    assert (len(impostor), len(genuine)) == (2, 0)
