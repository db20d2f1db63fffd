"""People with typed fields over HTTP: JSON and one-call enrolment, filters and sort, the face image.

The one-call enrolment runs the real :class:`Enrolment` here, over the SQLite gallery, with a
pipeline that decodes each upload for real and makes up its faces (none for a 40 px wide
image, two for a 48 px one), and an index that remembers what it holds or refuses on demand.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, cast

import cv2
import httpx
import numpy as np
import pytest

from orchestrator.api.admission import Admission
from orchestrator.clients.search import SearchClient, SearchServiceError
from orchestrator.core.resources import Resources
from orchestrator.db import Gallery
from orchestrator.gallery.enrolment import Enrolment
from orchestrator.pipeline.face_pipeline import Analysis, FacePipeline
from orchestrator.pipeline.vision.decode import decode
from orchestrator.pipeline.vision.faces import Face
from tests.api.conftest import Api, assert_problem
from tests.api.fakes import png
from tests.api.test_door import Upload, assert_problem_answer, call, multipart

pytestmark = pytest.mark.unit

FACELESS, TWO_FACES = 40, 48
"""Widths the fake pipeline finds no face, or two faces, in."""


def photo(width: int = 64, height: int = 64, shade: int = 128) -> bytes:
    ok, encoded = cv2.imencode(".png", np.full((height, width, 3), shade, np.uint8))
    assert ok
    return encoded.tobytes()


class FakePipeline:
    """Decodes for real; one face per image (its vector from the pixels), save the widths above."""

    async def analyse(self, image: bytes, **options: Any) -> Analysis:
        decoded = decode(image)
        count = {FACELESS: 0, TWO_FACES: 2}.get(decoded.width, 1)
        faces = []
        for index in range(count):
            face = Face(box=np.array([4, 4, 36 - index, 36], np.float32), det_score=0.99, sharpness=200.0)
            face.crop = np.full((112, 112, 3), int(decoded.rgb.mean()), np.uint8)
            vector = np.random.default_rng(int(decoded.rgb.sum())).standard_normal(512).astype(np.float32)
            face.embedding = vector / np.linalg.norm(vector)
            faces.append(face)
        return Analysis(faces=faces, width=decoded.width, height=decoded.height)


class FakeIndex:
    """The search service's add and delete: what it holds, or a refusal when ``down``."""

    def __init__(self) -> None:
        self.held: set[int] = set()
        self.down = False

    async def add(self, name: str, ids: Any, vectors: Any) -> int:
        if self.down:
            raise SearchServiceError(503, {"title": "Unavailable", "detail": "down"}, "http://search")
        self.held |= {int(i) for i in ids}
        return len(ids)

    async def delete(self, name: str, ids: Any) -> int:
        gone = self.held & {int(i) for i in ids}
        self.held -= gone
        return len(gone)


@pytest.fixture
def index(api: Api) -> FakeIndex:
    """The app's enrolment made the real one, over the fake pipeline and this index."""
    resources: Resources = api.app.state.resources
    fake = FakeIndex()
    enrolment = Enrolment(resources.gallery, cast(SearchClient, fake), cast(FacePipeline, FakePipeline()))
    # Made-up faces have nothing the quality gate could measure; its own tests are elsewhere.
    enrolment._gate = lambda *args, **kwargs: None  # type: ignore[method-assign]
    api.app.state.resources = replace(resources, enrolment=enrolment)
    return fake


def gallery(api: Api) -> Gallery:
    return cast(Resources, api.app.state.resources).gallery


def form(**fields: Any) -> dict[str, Any]:
    """httpx's ``data=`` for a form: texts as they are, anything else as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}


def files(*images: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"p{i}.png", image, "image/png")) for i, image in enumerate(images, 1)]


async def test_typed_fields_round_trip_as_json(admin: httpx.AsyncClient) -> None:
    body = {"name": "Ada", "external_id": "E-1", "age": 36, "gender": " F ", "address": "London"}
    created = await admin.post("/v1/people", json=body)
    assert created.status_code == 201, created.text
    person = created.json()
    assert {k: person[k] for k in ("age", "gender", "address", "faces", "face_count")} == {
        "age": 36,
        "gender": "F",
        "address": "London",
        "faces": [],
        "face_count": 0,
    }
    patched = await admin.patch(f"/v1/people/{person['id']}", json={"age": 37, "gender": None, "address": ""})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["age"], patched.json()["gender"], patched.json()["address"]) == (37, None, None)
    assert (await admin.get(f"/v1/people/{person['id']}")).json() == patched.json()


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"age": 151}, "age"),
        ({"age": -1}, "age"),
        ({"age": "36"}, "age"),
        ({"age": 36.5}, "age"),
        ({"age": True}, "age"),
        ({"gender": "x" * 33}, "gender"),
        ({"gender": 1}, "gender"),
        ({"address": "x" * 501}, "address"),
        ({"address": "a\x00b"}, "address"),
    ],
)
async def test_bad_typed_fields_are_422(admin: httpx.AsyncClient, fields: dict[str, Any], where: str) -> None:
    for answer in (
        await admin.post("/v1/people", json={"name": "X", **fields}),
        await admin.patch("/v1/people/1", json=fields),
    ):
        problem = assert_problem(answer, 422)
        assert problem["errors"][0]["loc"][:2] == ["body", where], problem


async def test_a_json_body_is_read_as_fastapi_would(admin: httpx.AsyncClient) -> None:
    assert_problem(
        await admin.post("/v1/people", content=b"{", headers={"content-type": "application/json"}), 422
    )
    assert_problem(await admin.post("/v1/people"), 422)
    assert_problem(await admin.post("/v1/people", content=b'{"name": "\xff"}'), 400)
    not_json = await admin.post(
        "/v1/people", content=b'{"name": "A"}', headers={"content-type": "text/plain"}
    )
    assert_problem(not_json, 422)
    typed = await admin.post(
        "/v1/people", content=b'{"name": "A"}', headers={"content-type": "application/vnd.x+json"}
    )
    assert typed.status_code == 201, typed.text


async def test_one_call_enrolment(api: Api, admin: httpx.AsyncClient, index: FakeIndex) -> None:
    fields = form(
        name="Grace Hopper", external_id="GH-1", age="85", gender="female", attributes={"rank": "admiral"}
    )
    answer = await admin.post("/v1/people", data=fields, files=files(photo(shade=90), photo(shade=200)))
    assert answer.status_code == 201, answer.text
    person = answer.json()
    assert (person["name"], person["external_id"], person["age"], person["gender"], person["address"]) == (
        "Grace Hopper",
        "GH-1",
        85,
        "female",
        None,
    )
    assert person["attributes"] == {"rank": "admiral"} and person["face_count"] == 2
    face_ids = [face["face_id"] for face in person["faces"]]
    assert len(set(face_ids)) == 2 and {face["person_id"] for face in person["faces"]} == {person["id"]}
    assert index.held == set(face_ids)
    listed = (await admin.get(f"/v1/people/{person['id']}/faces")).json()["items"]
    assert [face["face_id"] for face in listed] == face_ids
    again = await admin.post("/v1/people", data=form(name="Other", external_id="GH-1"), files=files(photo()))
    assert_problem(again, 409, "GH-1")


def nothing_new(api: Api, before: tuple[int, int], index: FakeIndex, held: set[int]) -> None:
    people = gallery(api).list_people()[1]
    assert (people, gallery(api).count_faces()) == before
    assert index.held == held


@pytest.mark.parametrize(
    ("bad", "status", "detail"),
    [
        (b"not an image at all", 415, "not a JPEG"),
        (photo()[:60], 400, "truncated"),
        (photo(width=FACELESS), 422, "no face"),
        (photo(width=TWO_FACES), 422, "2 faces"),
    ],
    ids=["not-an-image", "corrupt", "faceless", "two-faces"],
)
async def test_one_bad_photo_creates_nothing(
    api: Api, admin: httpx.AsyncClient, index: FakeIndex, bad: bytes, status: int, detail: str
) -> None:
    before = (gallery(api).list_people()[1], gallery(api).count_faces())
    held = set(index.held)
    answer = await admin.post(
        "/v1/people", data=form(name="Half", external_id="H-1"), files=files(photo(), bad, photo(shade=3))
    )
    problem = assert_problem(answer, status, detail)
    assert "file 2 ('p2.png')" in problem["detail"], problem
    nothing_new(api, before, index, held)
    assert (
        await admin.post("/v1/people", data=form(name="Half", external_id="H-1"), files=files(photo()))
    ).status_code == 201


async def test_several_faces_with_pick_largest(admin: httpx.AsyncClient, index: FakeIndex) -> None:
    answer = await admin.post(
        "/v1/people", params={"pick": "largest"}, data=form(name="Group"), files=files(photo(width=TWO_FACES))
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["faces"][0]["box"] == [4.0, 4.0, 36.0, 36.0]


async def test_an_index_that_refuses_leaves_nothing(
    api: Api, admin: httpx.AsyncClient, index: FakeIndex
) -> None:
    before = (gallery(api).list_people()[1], gallery(api).count_faces())
    index.down = True
    answer = await admin.post("/v1/people", data=form(name="Unlucky"), files=files(photo(), photo(shade=7)))
    assert_problem(answer, 503)
    assert int(answer.headers["retry-after"]) >= 1
    nothing_new(api, before, index, set())


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"age": "x"}, "age"),
        ({"age": "151"}, "age"),
        ({"age": ""}, "age"),
        ({"attributes": "{"}, "attributes"),
        ({"attributes": "[1]"}, "attributes"),
        ({"gender": "g" * 33}, "gender"),
        ({"name": " "}, "name"),
    ],
)
async def test_a_bad_form_field_is_422_before_any_photo_is_analysed(
    admin: httpx.AsyncClient, index: FakeIndex, fields: dict[str, str], where: str
) -> None:
    answer = await admin.post("/v1/people", data={"name": "Form", **fields}, files=files(photo()))
    problem = assert_problem(answer, 422)
    assert problem["errors"][0]["loc"][:2] == ["body", where], problem
    assert index.held == set()


async def test_a_form_needs_photos_and_at_most_sixteen(admin: httpx.AsyncClient, index: FakeIndex) -> None:
    boundary = "b0undary"
    empty = f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nNobody\r\n--{boundary}--\r\n'
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    problem = assert_problem(await admin.post("/v1/people", content=empty.encode(), headers=headers), 422)
    assert problem["errors"][0]["loc"] == ["body", "files"]
    many = await admin.post("/v1/people", data=form(name="Many"), files=files(*[photo()] * 17))
    assert assert_problem(many, 422)["errors"][0]["loc"] == ["body", "files"]


@pytest.mark.parametrize(("limit", "status"), [(2, 503), (3, 201)])
async def test_the_form_counts_each_photo_at_the_door(
    api: Api, admin: httpx.AsyncClient, index: FakeIndex, limit: int, status: int
) -> None:
    admission = cast(Admission, api.app.state.admission)
    admission.limit = limit
    answer = await admin.post("/v1/people", data=form(name="Three"), files=files(photo(), photo(), photo()))
    assert answer.status_code == status, answer.text
    assert admission.in_flight == 0
    admission.limit = 0  # JSON analyses nothing, so it is not admitted
    assert (await admin.post("/v1/people", json={"name": "Plain"})).status_code == 201


async def test_a_form_past_the_limit_or_without_a_key_is_refused_before_its_body(api: Api) -> None:
    """As for the other image routes (test_door): a form of photos is admitted at the door."""
    cast(Admission, api.app.state.admission).limit = 0
    for key, status in ((None, 401), (api.seeded.recognize_key, 403), (api.seeded.admin_key, 503)):
        upload = Upload(multipart("files", image=png(256, 256)), complete=False)
        assert_problem_answer(await call(api, "/v1/people", upload, key), status)
        assert upload.read == 0
    assert cast(Admission, api.app.state.admission).in_flight == 0


async def test_the_face_image_is_the_stored_crop(
    api: Api, admin: httpx.AsyncClient, recognizer: httpx.AsyncClient
) -> None:
    answer = await recognizer.get(f"/v1/faces/{api.seeded.face_id}/image")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert answer.content == png(112, 112)
    assert_problem(await recognizer.get("/v1/faces/999999/image"), 404)
    assert (await admin.delete(f"/v1/faces/{api.seeded.face_id}")).status_code == 204
    assert_problem(await recognizer.get(f"/v1/faces/{api.seeded.face_id}/image"), 404)


@pytest.fixture
async def crowd(admin: httpx.AsyncClient) -> dict[str, int]:
    people = [
        {"name": "Nguyễn Văn An", "age": 30, "gender": "Nam", "address": "12 Lê Lợi, Huế"},
        {"name": "Trần Thị Bình", "age": 25, "gender": "nữ", "address": "5 Trần Phú, Hà Nội"},
        {"name": "ANNA Schmidt", "age": 30, "gender": "NỮ", "address": "Hauptstraße 1, Köln"},
        {"name": "Bob", "gender": "male"},
        {"name": "Élodie", "age": 61, "address": "Lyon"},
    ]
    ids = {}
    for person in people:
        answer = await admin.post("/v1/people", json=person)
        assert answer.status_code == 201, answer.text
        ids[person["name"]] = answer.json()["id"]
    return ids


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"name": "an"}, ["Nguyễn Văn An", "ANNA Schmidt"]),
        ({"name": "ÉLO"}, ["Élodie"]),
        ({"gender": "nữ"}, ["Trần Thị Bình", "ANNA Schmidt"]),
        ({"gender": "nu"}, []),
        ({"gender": "Male"}, ["Bob"]),
        ({"gender": "mal"}, []),
        ({"address": "TRẦN PHÚ"}, ["Trần Thị Bình"]),
        ({"address": "straße"}, ["ANNA Schmidt"]),
        ({"age_min": 30}, ["Nguyễn Văn An", "ANNA Schmidt", "Élodie"]),
        ({"age_min": 25, "age_max": 30}, ["Nguyễn Văn An", "Trần Thị Bình", "ANNA Schmidt"]),
        ({"age_min": 31, "age_max": 30}, []),
        ({"name": "N", "age_max": 29}, ["Trần Thị Bình"]),
        ({"q": "lyon"}, ["Élodie"]),
        ({"q": "61"}, ["Élodie"]),
        ({"q": "male", "gender": "male"}, ["Bob"]),
        ({"sort": "name"}, ["ANNA Schmidt", "Bob", "Nguyễn Văn An", "Trần Thị Bình", "Élodie"]),
        ({"sort": "-age"}, ["Élodie", "ANNA Schmidt", "Nguyễn Văn An", "Trần Thị Bình", "Bob"]),
        ({"sort": "age"}, ["Trần Thị Bình", "Nguyễn Văn An", "ANNA Schmidt", "Élodie", "Bob"]),
        ({"sort": "-created_at", "age_min": 0}, ["Élodie", "ANNA Schmidt", "Trần Thị Bình", "Nguyễn Văn An"]),
    ],
)
async def test_list_filters_and_sort(
    recognizer: httpx.AsyncClient, crowd: dict[str, int], params: dict[str, Any], expected: list[str]
) -> None:
    answer = await recognizer.get("/v1/people", params={"limit": 500, **params})
    assert answer.status_code == 200, answer.text
    names = [person["name"] for person in answer.json()["items"] if person["name"] in crowd]
    assert names == expected
    assert answer.json()["total"] == len(expected) + ("Ada Lovelace" in str(answer.json()["items"]))


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "face_count"},
        {"sort": "-"},
        {"age_min": -1},
        {"age_max": 151},
        {"gender": "g" * 33},
        {"age_min": "x"},
    ],
)
async def test_bad_list_parameters_are_422(recognizer: httpx.AsyncClient, params: dict[str, Any]) -> None:
    assert_problem(await recognizer.get("/v1/people", params=params), 422)


async def test_the_spec_describes_both_bodies(anonymous: httpx.AsyncClient) -> None:
    spec = (await anonymous.get("/openapi.json")).json()
    content = spec["paths"]["/v1/people"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    schemas = spec["components"]["schemas"]
    assert {"PersonCreate", "PersonForm"} <= set(schemas)
    assert schemas["PersonForm"]["required"] == ["name", "files"]
    assert schemas["PersonCreate"]["properties"]["age"]["anyOf"][0] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 150,
    }
    parameters = {p["name"] for p in spec["paths"]["/v1/people"]["get"]["parameters"]}
    assert parameters >= {"q", "name", "gender", "address", "age_min", "age_max", "sort", "limit", "offset"}
