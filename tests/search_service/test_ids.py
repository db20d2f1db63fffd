"""Listing a collection's ids: pages in id order, in process and through the client."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from orchestrator.clients.search import SearchClient, SearchServiceError
from search_service.checksum import checksum_of_ids
from search_service.schema import CollectionSpec
from search_service.settings import SearchSettings
from search_service.vectors import encode_vectors
from tests.search_service.conftest import ServiceProcess, app_client, sharded_client, unit_vectors

DIM = 8
TOKEN = "search-token-for-tests-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = SearchSettings(data_dir=tmp_path, device="cpu", search_threads=2, token=SecretStr(TOKEN))
    async with app_client(settings) as http:
        http.headers.update(AUTH)
        yield http


async def make(client: httpx.AsyncClient, name: str, ids: np.ndarray, index: str = "flat") -> None:
    assert (await client.put(f"/collections/{name}", json={"dim": DIM, "index": index})).is_success
    vectors = unit_vectors(np.random.default_rng(ids.size), ids.size, DIM)
    # Several batches in shuffled order: the listing's order must not be the insertion's.
    for rows in np.array_split(np.random.default_rng(1).permutation(ids.size), 3):
        body = {"ids": ids[rows].tolist(), "vectors": encode_vectors(vectors[rows])}
        assert (await client.post(f"/collections/{name}/vectors", json=body)).is_success


async def walk(client: httpx.AsyncClient, name: str, limit: int) -> list[list[int]]:
    pages, after = [], -1
    while True:
        answer = await client.get(f"/collections/{name}/ids", params={"after": after, "limit": limit})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert set(page) == {"ids", "next_after"}
        pages.append(page["ids"])
        if page["next_after"] is None:
            return pages
        assert page["next_after"] == page["ids"][-1]
        after = page["next_after"]


@pytest.mark.unit
async def test_pages_walk_every_id_in_ascending_order(client: httpx.AsyncClient) -> None:
    ids = np.random.default_rng(5).choice(2**62, 500, replace=False).astype(np.int64)
    await make(client, "g", ids)
    pages = await walk(client, "g", 64)
    assert [len(page) for page in pages] == [64] * 7 + [52]
    assert [i for page in pages for i in page] == sorted(ids.tolist())
    # A last page that is exactly full says it is the last: no empty page to fetch after it.
    assert [len(page) for page in await walk(client, "g", 100)] == [100] * 5
    whole = (await client.get("/collections/g/ids")).json()
    assert whole == {"ids": sorted(ids.tolist()), "next_after": None}
    above = await client.get("/collections/g/ids", params={"after": int(ids.max())})
    assert above.json() == {"ids": [], "next_after": None}


@pytest.mark.unit
@pytest.mark.parametrize("index", ["flat", "hnsw"])
async def test_deleted_ids_are_not_listed(client: httpx.AsyncClient, index: str) -> None:
    """HNSW keeps deleted vectors as tombstones inside the index; they are not ids of it."""
    ids = np.arange(0, 300, 3, dtype=np.int64)
    await make(client, "g", ids, index)
    doomed = ids[::4].tolist()
    answer = await client.request("DELETE", "/collections/g/vectors", json={"ids": doomed})
    assert answer.json() == {"deleted": len(doomed)}
    kept = sorted(set(ids.tolist()) - set(doomed))
    assert [i for page in await walk(client, "g", 16) for i in page] == kept
    back = {"ids": doomed[:2], "vectors": encode_vectors(unit_vectors(np.random.default_rng(2), 2, DIM))}
    assert (await client.post("/collections/g/vectors", json=back)).is_success
    assert (await client.get("/collections/g/ids")).json()["ids"] == sorted([*kept, *doomed[:2]])


@pytest.mark.unit
async def test_a_listing_during_writes_is_a_consistent_page(client: httpx.AsyncClient) -> None:
    """A page holds every id stored before it was asked for and not yet being deleted when
    it came back, and none never sent (ids are added once and deleted once here)."""
    await make(client, "g", np.arange(1000, dtype=np.int64))
    vectors = encode_vectors(unit_vectors(np.random.default_rng(4), 100, DIM))
    stored, sent, doomed = set(range(1000)), set(range(1000)), set[int]()
    pages = 0

    async def write() -> None:
        for start in range(1000, 6000, 100):
            added = list(range(start, start + 100))
            sent.update(added)
            body = {"ids": added, "vectors": vectors}
            assert (await client.post("/collections/g/vectors", json=body)).is_success
            stored.update(added)
            gone = list(range(start - 1000, start - 950))
            doomed.update(gone)
            answer = await client.request("DELETE", "/collections/g/vectors", json={"ids": gone})
            assert answer.is_success
            stored.difference_update(gone)

    async def read() -> None:
        nonlocal pages
        while not writer.done():
            before = set(stored)
            listed = (await client.get("/collections/g/ids", params={"limit": 100_000})).json()["ids"]
            assert listed == sorted(listed)
            assert before - doomed <= set(listed) <= sent
            pages += 1

    writer = asyncio.ensure_future(write())
    await asyncio.gather(writer, read(), read())
    assert pages > 10


BAD_QUERIES: list[tuple[dict[str, int | str], str]] = [
    ({"limit": 0}, "limit"),
    ({"limit": 100_001}, "limit"),
    ({"limit": "many"}, "limit"),
    ({"after": -2}, "after"),
    ({"after": 2**63}, "after"),
    ({"after": "1.5"}, "after"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("params", "field"), BAD_QUERIES, ids=[str(p) for p, _ in BAD_QUERIES])
async def test_out_of_range_queries_are_422_problems(
    client: httpx.AsyncClient, params: dict[str, int | str], field: str
) -> None:
    await make(client, "g", np.arange(3, dtype=np.int64))
    answer = await client.get("/collections/g/ids", params=params)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"].endswith(":invalid-input") and field in problem["detail"]


@pytest.mark.unit
async def test_the_largest_page_is_allowed(client: httpx.AsyncClient) -> None:
    await make(client, "g", np.arange(3, dtype=np.int64))
    answer = await client.get("/collections/g/ids", params={"limit": 100_000, "after": 2**63 - 1})
    assert answer.json() == {"ids": [], "next_after": None}


@pytest.mark.unit
async def test_an_unknown_collection_is_404_and_no_token_401(client: httpx.AsyncClient) -> None:
    missing = await client.get("/collections/nope/ids")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"].endswith(":unknown-collection")
    await make(client, "g", np.arange(3, dtype=np.int64))
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-token-0123456789abcdefghij"}):
        refused = await client.get("/collections/g/ids", headers=headers)
        assert refused.status_code == 401 and refused.json()["type"].endswith(":unauthorized")
        assert "ids" not in refused.json()


async def fill(search: SearchClient, ids: np.ndarray) -> None:
    await search.create_collection("faces", CollectionSpec(dim=DIM))
    vectors = unit_vectors(np.random.default_rng(6), ids.size, DIM)
    for rows in np.array_split(np.random.default_rng(7).permutation(ids.size), 4):
        await search.add("faces", ids[rows], vectors[rows])


@pytest.mark.unit
async def test_the_client_merges_every_shard_page_by_page(tmp_path: Path) -> None:
    ids = np.random.default_rng(8).choice(10**9, 700, replace=False).astype(np.int64)
    async with sharded_client(tmp_path, 2, token=TOKEN) as search:
        await search.create_collection("empty", CollectionSpec(dim=DIM))
        empty = await search.ids("empty")
        assert empty.dtype == np.int64 and empty.shape == (0,)
        await fill(search, ids)
        for page in (1, 33, 100_000):
            got = await search.ids("faces", page=page)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, np.sort(ids))
        await search.delete("faces", ids[:100])
        got = await search.ids("faces", page=50)
        np.testing.assert_array_equal(got, np.sort(ids[100:]))
        assert checksum_of_ids(got) == (await search.info("faces")).checksum
        with pytest.raises(SearchServiceError) as error:
            await search.ids("nope")
        assert error.value.status == 404


@pytest.mark.integration
async def test_the_client_lists_two_shard_processes(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(32)
    shards = [ServiceProcess(tmp_path / f"shard{i}", shard=f"{i}/2", token=token) for i in range(2)]
    for shard in shards:
        shard.start()
    try:
        await asyncio.gather(*(asyncio.to_thread(s.wait_ready) for s in shards))
        ids = np.random.default_rng(9).choice(2**40, 2500, replace=False).astype(np.int64)
        async with SearchClient([s.url for s in shards], token=token) as search:
            await fill(search, ids)
            await search.delete("faces", ids[::5])
            kept = np.sort(np.delete(ids, np.s_[::5]))
            np.testing.assert_array_equal(await search.ids("faces", page=300), kept)
            np.testing.assert_array_equal(await search.ids("faces"), kept)
            async with SearchClient([shards[1].url], token=token) as one:
                np.testing.assert_array_equal(await one.ids("faces"), kept[kept % 2 == 1])
    finally:
        for shard in shards:
            shard.stop()
