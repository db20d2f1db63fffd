"""The shared token in process: every route but the probes refuses a caller without it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.routing import iter_route_contexts

from search_service.app import create_app
from search_service.settings import SearchSettings
from search_service.vectors import encode_vectors
from tests.search_service.conftest import app_client, unit_vectors

pytestmark = pytest.mark.unit

DIM = 4
TOKEN = "search-token-for-tests-0123456789abcdef"
VECTORS = encode_vectors(unit_vectors(np.random.default_rng(3), 2, DIM))
UNAUTHORIZED = "urn:facerec:search:problem:unauthorized"

# Every route that needs the token, in an order that works with it: create, read, write, drop.
PROTECTED: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("PUT", "/collections/g", {"dim": DIM}, 201),
    ("GET", "/collections", None, 200),
    ("GET", "/collections/g", None, 200),
    ("POST", "/collections/g/vectors", {"ids": [1, 2], "vectors": VECTORS}, 200),
    ("POST", "/collections/g/search", {"vectors": VECTORS, "k": 1}, 200),
    ("GET", "/collections/g/ids", None, 200),
    ("DELETE", "/collections/g/vectors", {"ids": [1]}, 200),
    ("DELETE", "/collections/g", None, 204),
]
PROBES = {("GET", "/health"), ("GET", "/metrics")}
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = SearchSettings(data_dir=tmp_path, device="cpu", search_threads=1, token=TOKEN)
    async with app_client(settings) as http:
        yield http


async def call(
    client: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.request(method, path, json=body, headers=headers)


def test_the_table_covers_every_route_but_the_probes(tmp_path: Path) -> None:
    app = create_app(SearchSettings(data_dir=tmp_path, token=TOKEN))
    served = {
        (method, str(context.path).replace("{name}", "g"))
        for context in iter_route_contexts(app.routes)
        for method in context.methods or ()
        if method != "HEAD"
    }
    listed = {(method, path) for method, path, _, _ in PROTECTED}
    assert served == listed | PROBES | {("GET", path) for path in DOCS}


async def test_each_route_answers_with_the_token(client: httpx.AsyncClient) -> None:
    for method, path, body, status in PROTECTED:
        answer = await call(client, method, path, body, bearer(TOKEN))
        assert answer.status_code == status, (method, path, answer.text)


@pytest.mark.parametrize(
    "headers",
    [
        None,
        bearer("wrong-token-of-the-same-kind-0123456789"),
        bearer(TOKEN[:-1]),
        bearer(TOKEN + "x"),
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"X-API-Key": TOKEN},
    ],
    ids=["none", "wrong", "prefix", "longer", "no-scheme", "basic", "other-header"],
)
async def test_each_route_refuses_a_missing_or_wrong_token(
    client: httpx.AsyncClient, headers: dict[str, str] | None
) -> None:
    setup = [("PUT", "/collections/g", {"dim": DIM}), ("POST", "/collections/g/vectors", PROTECTED[3][2])]
    for method, path, body in setup:
        assert (await call(client, method, path, body, bearer(TOKEN))).is_success
    for method, path, body, _ in PROTECTED:
        answer = await call(client, method, path, body, headers)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["www-authenticate"] == "Bearer"
        problem = answer.json()
        assert problem["type"] == UNAUTHORIZED and problem["status"] == 401
        assert "FACEREC_SEARCH_TOKEN" in problem["detail"] and TOKEN not in answer.text
    # Refused calls changed nothing: the collection and both vectors are still there.
    info = await call(client, "GET", "/collections/g", None, bearer(TOKEN))
    assert info.json()["count"] == 2


async def test_the_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    answer = await call(client, "GET", "/collections", None, {"Authorization": f"bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.json() == []


async def test_probes_and_metrics_need_no_token(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200 and "facerec_search_" in metrics.text


async def test_without_a_token_configured_the_loopback_service_is_open(tmp_path: Path) -> None:
    settings = SearchSettings(data_dir=tmp_path, device="cpu", search_threads=1)
    assert settings.token is None and settings.host == "127.0.0.1"
    async with app_client(settings) as http:
        assert (await http.put("/collections/g", json={"dim": DIM})).status_code == 201
        assert (await http.delete("/collections/g")).status_code == 204


async def test_a_caller_without_the_token_learns_nothing_of_which_collections_exist(
    client: httpx.AsyncClient,
) -> None:
    for method, path in (("GET", "/collections/nope"), ("DELETE", "/collections/nope")):
        assert (await client.request(method, path)).status_code == 401
        assert (await client.request(method, path, headers=bearer(TOKEN))).status_code == 404
