"""The HTTP API in process (ASGI): answers, problem+json errors that change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from search_service.checksum import checksum_of_ids
from search_service.faiss_index import ID_MAP_ENTRY_BYTES
from search_service.settings import SearchSettings
from search_service.vectors import encode_vectors
from tests.search_service.conftest import app_client, assert_same_topk, brute_force, unit_vectors

pytestmark = pytest.mark.unit

DIM = 8


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = SearchSettings(data_dir=tmp_path, device="cpu", search_threads=2)
    async with app_client(settings) as http:
        yield http


@pytest.fixture
async def gallery(client: httpx.AsyncClient) -> np.ndarray:
    vectors = unit_vectors(np.random.default_rng(8), 200, DIM)
    assert (await client.put("/collections/g", json={"dim": DIM})).status_code == 201
    body = {"ids": list(range(200)), "vectors": encode_vectors(vectors)}
    assert (await client.post("/collections/g/vectors", json=body)).json() == {"added": 200}
    return vectors


async def test_search_over_http_equals_brute_force(client: httpx.AsyncClient, gallery: np.ndarray) -> None:
    probes = unit_vectors(np.random.default_rng(9), 30, DIM)
    for payload in (probes.tolist(), encode_vectors(probes)):
        answer = await client.post("/collections/g/search", json={"vectors": payload, "k": 7})
        results = answer.json()["results"]
        assert_same_topk(
            [[h["id"] for h in row] for row in results],
            [[h["score"] for h in row] for row in results],
            *brute_force(gallery, np.arange(200), probes, 7),
        )
    # Queries are normalised too: a scaled probe gives the same cosines.
    scaled = await client.post("/collections/g/search", json={"vectors": (probes[:1] * 5).tolist()})
    assert scaled.json()["results"][0][0]["id"] == results[0][0]["id"]
    assert len(scaled.json()["results"][0]) == 10  # default k


async def test_collection_lifecycle(client: httpx.AsyncClient, gallery: np.ndarray) -> None:
    info = (await client.get("/collections/g")).json()
    assert info == {
        "name": "g",
        "dim": DIM,
        "count": 200,
        "checksum": checksum_of_ids(range(200)),
        "index": "flat",
        "device": "cpu",
        "memory_bytes": 200 * (DIM * 4 + 8 + ID_MAP_ENTRY_BYTES),  # vectors, ids, the id map
    }
    assert (await client.put("/collections/g", json={"dim": DIM, "index": "flat"})).status_code == 200
    deleted = await client.request("DELETE", "/collections/g/vectors", json={"ids": [1, 2, 999]})
    assert deleted.json() == {"deleted": 2}
    assert (await client.get("/collections/g")).json()["count"] == 198
    assert (await client.delete("/collections/g")).status_code == 204
    assert (await client.get("/collections/g")).status_code == 404
    assert (await client.put("/collections/g", json={"dim": 4})).status_code == 201
    health = {"status": "ok", "shard": None, "collections": 1, "device": "cpu"}
    assert (await client.get("/health")).json() == health


BAD_REQUESTS: list[tuple[str, str, str, Any, int, str]] = [
    # (name, method, path, json body or raw bytes, status, problem slug)
    (
        "wrong dim",
        "POST",
        "/collections/g/vectors",
        {"ids": [500], "vectors": [[1.0] * (DIM + 1)]},
        422,
        "dimension-mismatch",
    ),
    (
        "wrong dim base64",
        "POST",
        "/collections/g/vectors",
        {"ids": [500], "vectors": encode_vectors(np.ones((1, DIM - 1)))},
        422,
        "invalid-input",
    ),
    (
        "NaN",
        "POST",
        "/collections/g/vectors",
        b'{"ids": [500], "vectors": [[NaN, 1, 1, 1, 1, 1, 1, 1]]}',
        422,
        "non-finite",
    ),
    (
        "inf",
        "POST",
        "/collections/g/vectors",
        {"ids": [500, 501], "vectors": encode_vectors(np.array([[1] * DIM, [np.inf] * DIM]))},
        422,
        "non-finite",
    ),
    (
        "duplicate in request",
        "POST",
        "/collections/g/vectors",
        {"ids": [500, 500], "vectors": [[1.0] * DIM] * 2},
        422,
        "duplicate-ids",
    ),
    (
        "duplicate of stored",
        "POST",
        "/collections/g/vectors",
        {"ids": [500, 3], "vectors": [[1.0] * DIM] * 2},
        409,
        "duplicate-ids",
    ),
    (
        "count mismatch",
        "POST",
        "/collections/g/vectors",
        {"ids": [500, 501], "vectors": [[1.0] * DIM]},
        422,
        "count-mismatch",
    ),
    (
        "negative id",
        "POST",
        "/collections/g/vectors",
        {"ids": [-1], "vectors": [[1.0] * DIM]},
        422,
        "invalid-input",
    ),
    (
        "zero vector",
        "POST",
        "/collections/g/vectors",
        {"ids": [500], "vectors": [[0.0] * DIM]},
        422,
        "invalid-input",
    ),
    ("bad JSON", "POST", "/collections/g/vectors", b'{"ids": [500', 400, "bad-json"),
    (
        "unknown collection",
        "POST",
        "/collections/nope/vectors",
        {"ids": [500], "vectors": [[1.0] * DIM]},
        404,
        "unknown-collection",
    ),
    (
        "unknown collection search",
        "POST",
        "/collections/nope/search",
        {"vectors": [[1.0] * DIM]},
        404,
        "unknown-collection",
    ),
    (
        "search wrong dim",
        "POST",
        "/collections/g/search",
        {"vectors": [[1.0] * 3]},
        422,
        "dimension-mismatch",
    ),
    (
        "search k too big",
        "POST",
        "/collections/g/search",
        {"vectors": [[1.0] * DIM], "k": 100000},
        422,
        "invalid-input",
    ),
    (
        "search NaN",
        "POST",
        "/collections/g/search",
        b'{"vectors": [[1, 1, 1, 1, 1, 1, 1, Infinity]]}',
        422,
        "non-finite",
    ),
    ("delete bad JSON", "DELETE", "/collections/g/vectors", b"[", 400, "bad-json"),
    ("delete duplicate ids", "DELETE", "/collections/g/vectors", {"ids": [3, 3]}, 422, "duplicate-ids"),
    ("other spec", "PUT", "/collections/g", {"dim": DIM + 1}, 409, "collection-exists"),
    ("unknown index", "PUT", "/collections/h", {"dim": DIM, "index": "lsh"}, 422, "invalid-input"),
    ("bad name", "PUT", "/collections/-bad", {"dim": DIM}, 422, "invalid-name"),
    ("drop unknown", "DELETE", "/collections/nope", None, 404, "unknown-collection"),
    ("unknown route", "GET", "/nothing", None, 404, "not-found"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "slug"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
async def test_bad_requests_are_problems_and_change_nothing(
    client: httpx.AsyncClient,
    gallery: np.ndarray,
    method: str,
    path: str,
    body: Any,
    status: int,
    slug: str,
) -> None:
    before = (await client.get("/collections/g")).json()
    if isinstance(body, bytes):
        answer = await client.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
    else:
        answer = await client.request(method, path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == status and problem["type"].endswith(":" + slug)
    assert problem["title"] and problem["detail"]
    assert (await client.get("/collections/g")).json() == before
    assert (await client.get("/health")).json()["collections"] == 1


async def test_metrics(client: httpx.AsyncClient, gallery: np.ndarray) -> None:
    await client.post("/collections/g/search", json={"vectors": [[1.0] * DIM] * 3})
    text = (await client.get("/metrics")).text
    assert 'facerec_search_vectors{collection="g"} 200.0' in text
    assert 'facerec_search_queries_total{collection="g"} 3.0' in text
    assert (
        'facerec_search_requests_total{method="POST",route="/collections/{name}/search",'
        'status="200"} 1.0' in text
    )
    assert 'facerec_search_request_seconds_bucket{le="0.5",method="POST"' in text
