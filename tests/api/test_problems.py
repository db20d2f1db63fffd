"""Every refusal is RFC 9457 problem+json with its status and request id, and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import MAX_BODY_BYTES, Api, assert_problem
from tests.api.fakes import BrokenRecognition, png

pytestmark = pytest.mark.unit

NOT_AN_IMAGE = b"this is text, not a photo"
GIF = b"GIF89a" + bytes(64)
TRUNCATED_PNG = png()[:-12]  # no IEND chunk


async def gallery_counts(client: httpx.AsyncClient, person_id: int) -> tuple[int, int]:
    """(people, faces of the seeded person): what a refused request must leave as it was."""
    people = await client.get("/v1/people")
    faces = await client.get(f"/v1/people/{person_id}/faces")
    assert people.status_code == 200 and faces.status_code == 200
    return people.json()["total"], len(faces.json()["items"])


async def test_401_without_a_key_and_with_an_unknown_one(api: Api, anonymous: httpx.AsyncClient) -> None:
    assert_problem(await anonymous.get("/v1/people"), 401, "X-API-Key")
    async with api.client("frk_never-issued") as stranger:
        assert_problem(await stranger.get("/v1/people"), 401)


async def test_403_for_the_wrong_role_changes_nothing(
    api: Api, admin: httpx.AsyncClient, recognizer: httpx.AsyncClient
) -> None:
    person = api.seeded.person_id
    before = await gallery_counts(admin, person)
    assert_problem(await recognizer.post("/v1/people", json={"name": "Mallory"}), 403, "admin")
    assert_problem(await recognizer.delete(f"/v1/people/{person}"), 403)
    assert_problem(await recognizer.delete(f"/v1/faces/{api.seeded.face_id}"), 403)
    assert await gallery_counts(admin, person) == before


UNKNOWN_IDS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/people/999999", {}),
    ("PATCH", "/v1/people/999999", {"json": {"name": "Nobody"}}),
    ("DELETE", "/v1/people/999999", {}),
    ("GET", "/v1/people/999999/faces", {}),
    ("POST", "/v1/people/999999/faces", {"files": {"file": ("f.png", png(), "image/png")}}),
    ("DELETE", "/v1/faces/999999", {}),
    ("DELETE", "/v1/keys/999999", {}),
    ("GET", "/v1/models/rollouts/999999", {}),
    ("POST", "/v1/models/rollouts/999999/rollback", {}),
]


@pytest.mark.parametrize(
    ("method", "path", "request_args"), UNKNOWN_IDS, ids=[f"{m} {p}" for m, p, _ in UNKNOWN_IDS]
)
async def test_404_for_an_unknown_id(
    admin: httpx.AsyncClient, method: str, path: str, request_args: dict[str, Any]
) -> None:
    assert_problem(await admin.request(method, path, **request_args), 404)


BEYOND_INT64 = str(2**63)
OUT_OF_RANGE = [
    (method, path.replace("999999", BEYOND_INT64), request_args) for method, path, request_args in UNKNOWN_IDS
] + [("GET", f"/v1/people?offset={BEYOND_INT64}", {})]


@pytest.mark.parametrize(
    ("method", "path", "request_args"), OUT_OF_RANGE, ids=[f"{m} {p}" for m, p, _ in OUT_OF_RANGE]
)
async def test_an_id_past_64_bits_is_a_client_error(
    admin: httpx.AsyncClient, method: str, path: str, request_args: dict[str, Any]
) -> None:
    answer = await admin.request(method, path, **request_args)
    assert answer.status_code in (404, 422), answer.text
    assert_problem(answer, answer.status_code)


async def test_404_for_an_unknown_path_with_or_without_a_key(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    assert_problem(await admin.get("/v1/nowhere"), 404)
    assert_problem(await anonymous.get("/v1/nowhere"), 404)
    assert_problem(await anonymous.post("/nowhere/at/all", json={}), 404)


async def test_405_for_a_method_the_path_does_not_have(admin: httpx.AsyncClient) -> None:
    answer = await admin.put("/v1/people")
    assert_problem(answer, 405)
    # Every method of the path, as RFC 9110 asks (test_spec pins the lists).
    assert answer.headers["allow"]
    assert_problem(await admin.get("/v1/recognize"), 405)
    assert_problem(await admin.delete("/v1/keys"), 405)


async def test_413_for_a_declared_length_over_the_limit(api: Api, admin: httpx.AsyncClient) -> None:
    person = api.seeded.person_id
    before = await gallery_counts(admin, person)
    huge = ("big.png", png() + bytes(MAX_BODY_BYTES), "image/png")
    assert_problem(await admin.post(f"/v1/people/{person}/faces", files={"file": huge}), 413, "limit")
    assert_problem(await admin.post("/v1/recognize", files={"file": huge}), 413, "limit")
    padded = b'{"name": "Grace Hopper"' + b" " * MAX_BODY_BYTES + b"}"
    answer = await admin.post("/v1/people", content=padded, headers={"content-type": "application/json"})
    assert_problem(answer, 413, "limit")
    assert await gallery_counts(admin, person) == before


async def chunks(total: int, size: int = 4096, head: bytes = b"") -> AsyncIterator[bytes]:
    """``head`` and then zeros, ``total`` bytes in all, with no Content-Length (chunked)."""
    yield head
    sent = len(head)
    while sent < total:
        chunk = bytes(min(size, total - sent))
        sent += len(chunk)
        yield chunk


async def test_413_for_a_chunked_body_over_the_limit(api: Api, admin: httpx.AsyncClient) -> None:
    person = api.seeded.person_id
    before = await gallery_counts(admin, person)
    json_head = b'{"name": "Grace Hopper", "attributes": {"pad": "'
    answer = await admin.post(
        "/v1/people",
        content=chunks(2 * MAX_BODY_BYTES, head=json_head),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in answer.request.headers
    assert_problem(answer, 413, "limit")

    boundary = "facerec-test-boundary"
    part_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    for path in (f"/v1/people/{person}/faces", "/v1/recognize"):
        answer = await admin.post(
            path,
            content=chunks(2 * MAX_BODY_BYTES, head=part_head),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert_problem(answer, 413, "limit")
    assert await gallery_counts(admin, person) == before


async def test_a_body_at_the_limit_is_accepted_declared_or_chunked(admin: httpx.AsyncClient) -> None:
    head, tail = b'{"name": "Grace Hopper"', b"}"
    exact = head + b" " * (MAX_BODY_BYTES - len(head) - len(tail)) + tail
    assert len(exact) == MAX_BODY_BYTES
    json_type = {"content-type": "application/json"}
    declared = await admin.post("/v1/people", content=exact, headers=json_type)
    assert declared.status_code == 201, declared.text

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(exact), 1000):
            yield exact[start : start + 1000]

    chunked = await admin.post("/v1/people", content=streamed(), headers=json_type)
    assert chunked.status_code == 201, chunked.text


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(NOT_AN_IMAGE, 415, id="text"),
        pytest.param(GIF, 415, id="gif"),
        pytest.param(TRUNCATED_PNG, 400, id="truncated-png"),
        pytest.param(b"", 400, id="empty"),
    ],
)
async def test_an_upload_that_is_not_a_usable_image(
    api: Api, admin: httpx.AsyncClient, data: bytes, status: int
) -> None:
    person = api.seeded.person_id
    before = await gallery_counts(admin, person)
    upload = ("upload.bin", data, "application/octet-stream")
    assert_problem(await admin.post("/v1/recognize", files={"file": upload}), status)
    assert_problem(await admin.post("/v1/detect", files={"file": upload}), status)
    good = ("face.png", png(), "image/png")
    assert_problem(await admin.post("/v1/verify", files={"file1": good, "file2": upload}), status)
    assert_problem(await admin.post(f"/v1/people/{person}/faces", files={"file": upload}), status)
    assert await gallery_counts(admin, person) == before


async def test_a_batch_answers_a_problem_for_the_image_that_is_not_one(admin: httpx.AsyncClient) -> None:
    good = ("face.png", png(), "image/png")
    bad = ("notes.txt", NOT_AN_IMAGE, "text/plain")
    answer = await admin.post("/v1/recognize/batch", files=[("files", good), ("files", bad)])
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["results"]
    assert first["faces"] and first["model_version"]
    assert second["status"] == 415 and second["type"] and second["title"] and second["detail"]


UPLOAD = {"file": ("f.png", png(), "image/png")}
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "request_args", "detail_part"),
    [
        pytest.param(
            "POST", "/v1/recognize", {"params": {"top_k": 0}, "files": UPLOAD}, "top_k", id="top_k=0"
        ),
        pytest.param(
            "POST", "/v1/recognize", {"params": {"threshold": 2}, "files": UPLOAD}, "", id="threshold=2"
        ),
        pytest.param("POST", "/v1/recognize", {}, "file", id="no-file"),
        pytest.param("GET", "/v1/people", {"params": {"limit": 0}}, "limit", id="limit=0"),
        pytest.param("GET", "/v1/people/not-a-number", {}, "person_id", id="non-numeric-id"),
        pytest.param("POST", "/v1/people", {"content": b"{not json", "headers": JSON}, "", id="bad-json"),
        pytest.param("POST", "/v1/people", {"json": {"name": ""}}, "name", id="empty-name"),
        pytest.param(
            "POST", "/v1/people", {"json": {"name": "x", "attributes": [1]}}, "attributes", id="list-attrs"
        ),
        pytest.param("POST", "/v1/keys", {"json": {"name": "k", "role": "root"}}, "role", id="unknown-role"),
        pytest.param(
            "POST", "/v1/models/rollouts", {"json": {"version": "latest"}}, "version", id="bad-version"
        ),
    ],
)
async def test_422_for_a_request_that_does_not_validate(
    api: Api,
    admin: httpx.AsyncClient,
    method: str,
    path: str,
    request_args: dict[str, Any],
    detail_part: str,
) -> None:
    before = await gallery_counts(admin, api.seeded.person_id)
    answer = await admin.request(method, path, **request_args)
    assert_problem(answer, 422, detail_part)
    assert await gallery_counts(admin, api.seeded.person_id) == before


async def test_an_unexpected_error_is_a_generic_500_problem(broken_api: Api) -> None:
    async with broken_api.client(broken_api.seeded.admin_key) as admin:
        answer = await admin.post("/v1/recognize", files={"file": ("f.png", png(), "image/png")})
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["status"] == 500 and problem["type"] and problem["title"] and problem["detail"]
    assert BrokenRecognition.SECRET not in answer.text and "Traceback" not in answer.text
