"""The request id: a caller's plain token is echoed, anything else replaced, never a 5xx."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.api.conftest import Api, assert_problem, raw_header
from tests.api.fakes import png

pytestmark = pytest.mark.unit

GENERATED = re.compile(r"[0-9a-f]{32}")


async def get(api: Api, path: str, request_id: str | bytes | None) -> httpx.Response:
    headers = {} if request_id is None else raw_header("X-Request-ID", request_id)
    async with api.client() as client:
        return await client.get(path, headers=headers)


async def test_a_given_id_is_echoed_in_the_header_and_the_problem(api: Api) -> None:
    answer = await get(api, "/health/live", "abc-123")
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "abc-123"
    problem = assert_problem(await get(api, "/v1/people", "abc-123"), 401)
    assert problem["request_id"] == "abc-123"


async def test_the_longest_plain_token_is_kept(api: Api) -> None:
    token = "Req.1:2_3-" + "x" * 54
    assert len(token) == 64
    assert (await get(api, "/health/live", token)).headers["x-request-id"] == token


async def test_an_absent_id_is_generated_fresh_for_each_request(api: Api) -> None:
    first = await get(api, "/health/live", None)
    second = assert_problem(await get(api, "/v1/people", None), 401)
    assert GENERATED.fullmatch(first.headers["x-request-id"])
    assert GENERATED.fullmatch(second["request_id"])
    assert first.headers["x-request-id"] != second["request_id"]


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("", id="empty"),
        pytest.param("has spaces", id="spaces"),
        pytest.param("x" * 65, id="65-chars"),
        pytest.param("a" * 10_000, id="10k-chars"),
        pytest.param("id/with/slashes", id="slashes"),
        pytest.param('"quoted"', id="quotes"),
        pytest.param("caf\u00e9".encode(), id="utf-8"),
        pytest.param(b"\xff\xfe\x80", id="non-ascii-bytes"),
        pytest.param(b"abc\x00def", id="nul"),
        pytest.param(b"abc\tdef", id="tab"),
    ],
)
async def test_an_invalid_id_is_replaced_never_a_5xx(api: Api, given: str | bytes) -> None:
    live = await get(api, "/health/live", given)
    assert live.status_code == 200, live.text
    assert GENERATED.fullmatch(live.headers["x-request-id"])
    problem = assert_problem(await get(api, "/v1/people", given), 401)
    assert GENERATED.fullmatch(problem["request_id"])
    assert live.headers["x-request-id"] != problem["request_id"]


async def test_every_kind_of_answer_carries_the_id(api: Api) -> None:
    headers = {"X-Request-ID": "trace-42"}
    async with api.client(api.seeded.admin_key) as admin:
        answers = [
            await admin.get("/v1/people", headers=headers),
            await admin.get("/metrics", headers=headers),
            await admin.get("/v1/nowhere", headers=headers),
            await admin.put("/v1/people", headers=headers),
            await admin.post("/v1/recognize", params={"top_k": 0}, headers=headers),
            await admin.post("/v1/people", content=b"x" * 100_000, headers=headers),
            await admin.delete(f"/v1/faces/{api.seeded.face_id}", headers=headers),
        ]
    assert [a.status_code for a in answers] == [200, 200, 404, 405, 422, 413, 204]
    assert {a.headers["x-request-id"] for a in answers} == {"trace-42"}
    assert all(a.headers.get_list("x-request-id") == ["trace-42"] for a in answers)


async def test_a_500_carries_the_request_id(broken_api: Api) -> None:
    async with broken_api.client(broken_api.seeded.admin_key) as admin:
        answer = await admin.post(
            "/v1/recognize",
            files={"file": ("f.png", png(), "image/png")},
            headers={"X-Request-ID": "trace-500"},
        )
    assert answer.status_code == 500
    assert answer.headers.get("x-request-id") == "trace-500"
    assert answer.json()["request_id"] == "trace-500"
