"""Keys and roles, and bad input: each refused with its 4xx problem+json, changing nothing."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.flows import create_person, enrol, gallery_snapshot, make_gallery
from tests.support import augment
from tests.unit.test_decode import png_header

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, detail_part: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["type"].startswith("https://") and body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert detail_part.lower() in body["detail"].lower(), body
    assert "Traceback" not in response.text
    return dict(body)


@pytest.fixture(scope="module")
def people(admin: httpx.Client, photos: Path) -> dict:
    return make_gallery(admin, photos)


@pytest.fixture(scope="module")
def recognizer(stack, admin) -> Iterator[httpx.Client]:
    created = admin.post("/v1/keys", json={"name": "kiosk", "role": "recognize"})
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("frk_") and body["role"] == "recognize"
    with stack.client(body["key"]) as client:
        yield client


def test_keys_and_roles(stack, admin, recognizer, people, photos: Path) -> None:
    with stack.client(None) as anonymous:
        assert_problem(anonymous.get("/v1/people"), 401, "X-API-Key")
    with stack.client("frk_not-a-real-key") as stranger:
        assert_problem(stranger.get("/v1/people"), 401, "unknown or revoked")
    assert recognizer.get("/v1/people").status_code == 200
    obama3 = (photos / "obama3.jpg").read_bytes()
    assert recognizer.post("/v1/recognize", files={"file": ("a.jpg", obama3)}).status_code == 200
    assert_problem(recognizer.post("/v1/people", json={"name": "x"}), 403, "admin")
    assert_problem(recognizer.delete(f"/v1/people/{people['obama']['id']}"), 403)
    assert_problem(recognizer.get("/v1/keys"), 403)
    listed = admin.get("/v1/keys").json()["items"]
    assert {k["role"] for k in listed} == {"admin", "recognize"}
    assert all("key" not in k and "hash" not in str(k) for k in listed)
    kiosk = next(k for k in listed if k["name"] == "kiosk")
    assert admin.delete(f"/v1/keys/{kiosk['id']}").status_code == 204
    assert_problem(recognizer.get("/v1/people"), 401)


def noise_jpeg() -> bytes:
    return augment.encode(np.random.default_rng(9).integers(0, 255, (480, 640, 3), dtype=np.uint8))


def test_bad_enrolments_change_nothing(admin, people, photos: Path) -> None:
    obama = people["obama"]["id"]
    group = augment.group_photo([(photos / n).read_bytes() for n in ["obama3.jpg", "biden.jpg"]])
    jpeg = (photos / "obama3.jpg").read_bytes()
    cases = [
        (b"", 400, "empty"),
        (b"this is text, not a photo", 415, "not a JPEG"),
        (b"GIF89a" + bytes(100), 415, "GIF"),
        (jpeg[: len(jpeg) // 2], 400, "truncated"),
        (png_header(30000, 30000) + bytes(64), 413, "pixels"),
        (noise_jpeg(), 422, "no face"),
        (group, 422, "2 faces"),
    ]
    before = gallery_snapshot(admin)
    for data, status, detail in cases:
        response = admin.post(f"/v1/people/{obama}/faces", files={"file": ("x.jpg", data)})
        assert_problem(response, status, detail)
    assert_problem(admin.post("/v1/people/999999/faces", files={"file": ("x.jpg", jpeg)}), 404)
    assert gallery_snapshot(admin) == before
    # The same group photo is accepted when the caller asks for the largest face: Biden's, so
    # to him (to Obama it would be refused as a duplicate identity).
    biden = people["biden"]["id"]
    enrolled = enrol(admin, biden, group, pick="largest")
    assert enrolled["person_id"] == biden


def test_request_size_limit(admin, people) -> None:
    before = gallery_snapshot(admin)
    huge = bytes(9 * 1024 * 1024)
    assert_problem(
        admin.post(f"/v1/people/{people['obama']['id']}/faces", files={"file": ("x.jpg", huge)}), 413, "limit"
    )

    def chunks():
        for _ in range(10):
            yield bytes(1024 * 1024)

    streamed = admin.post("/v1/people", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(streamed, 413)
    assert gallery_snapshot(admin) == before


def test_a_large_upload_refused_at_the_door_still_gets_its_answer(stack) -> None:
    """Past 1 MiB the server closes the connection instead of reading the refused rest; a
    client that reads after its upload fails (this sync httpx client does) gets the answer."""
    big = bytes(6 * 1024 * 1024)
    with stack.client(key=None) as anonymous:
        for _ in range(3):  # each on a new connection
            answer = anonymous.post("/v1/recognize", files={"file": ("big.jpg", big)})
            assert_problem(answer, 401)
            assert answer.headers["connection"] == "close"
        small = anonymous.post("/v1/recognize", files={"file": ("small.jpg", bytes(1000))})
        assert_problem(small, 401)
        assert "connection" not in small.headers


def test_bad_json_and_routing_errors(admin, people) -> None:
    before = gallery_snapshot(admin)
    assert_problem(
        admin.post("/v1/people", content=b"{not json", headers={"content-type": "application/json"}), 422
    )
    assert_problem(admin.post("/v1/people", json={"name": ""}), 422, "name")
    assert_problem(admin.post("/v1/people", json={"name": "x", "attributes": [1, 2]}), 422)
    assert_problem(admin.post("/v1/people", json={"name": "Dup", "external_id": "potus-44"}), 409)
    assert_problem(admin.patch(f"/v1/people/{people['biden']['id']}", json={"external_id": "potus-44"}), 409)
    assert_problem(admin.get("/v1/people/12345678"), 404)
    assert_problem(admin.get("/v1/people/not-a-number"), 422)
    assert_problem(admin.get("/v1/nowhere"), 404)
    assert_problem(admin.put("/v1/people"), 405)
    assert_problem(
        admin.post("/v1/recognize", params={"top_k": 0}, files={"file": ("a", b"x")}), 422, "top_k"
    )
    assert_problem(admin.post("/v1/recognize"), 422, "file")
    assert gallery_snapshot(admin) == before


def test_recognize_and_verify_errors(admin, people, photos: Path) -> None:
    noise = noise_jpeg()
    answer = admin.post("/v1/recognize", files={"file": ("n.jpg", noise)}).json()
    assert answer["faces"] == []
    verify = admin.post(
        "/v1/verify",
        files={"file1": ("n.jpg", noise), "file2": ("o.jpg", (photos / "obama.jpg").read_bytes())},
    )
    assert_problem(verify, 422, "file1")
    assert_problem(admin.post("/v1/detect", files={"file": ("g.gif", b"GIF89a" + bytes(10))}), 415)


def test_people_are_created_with_everything_they_were_given(admin) -> None:
    person = create_person(
        admin, "  Ada Lovelace  ", external_id="ada", attributes={"born": 1815, "city": "London"}
    )
    assert person["name"] == "Ada Lovelace" and person["face_count"] == 0
    assert person.pop("faces") == []  # a creation answers with the faces it enrolled
    assert admin.get(f"/v1/people/{person['id']}").json() == person
