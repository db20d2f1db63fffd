"""The orchestrator's search client without servers: merging and error mapping."""

from __future__ import annotations

import json

import httpx
import pytest

from orchestrator.clients.search import SearchClient, SearchUnavailable, merge_hits
from search_service.schema import Hit

pytestmark = pytest.mark.unit


def test_merge_takes_global_top_k_best_first() -> None:
    shard_a = [[Hit(id=3, score=0.9), Hit(id=6, score=0.2)], []]
    shard_b = [[Hit(id=1, score=0.95), Hit(id=4, score=0.5)], [Hit(id=7, score=0.1)]]
    merged = merge_hits([shard_a, shard_b], 3)
    assert [h.id for h in merged[0]] == [1, 3, 4]
    assert [h.id for h in merged[1]] == [7]
    tie = merge_hits([[[Hit(id=9, score=0.5)]], [[Hit(id=2, score=0.5)]]], 1)
    assert [h.id for h in tie[0]] == [2]  # ties broken by id, deterministically


async def test_unreachable_shard_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with SearchClient(["http://shard0"], transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(SearchUnavailable) as err:
            await client.info("faces")
    assert err.value.status == 503


async def test_ids_are_routed_by_modulo() -> None:
    seen: dict[str, list[int]] = {}

    def record(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = json.loads(request.content)["ids"]
        return httpx.Response(200, json={"deleted": len(seen[request.url.host])})

    urls = ["http://s0", "http://s1", "http://s2"]
    async with SearchClient(urls, transport=httpx.MockTransport(record)) as client:
        assert await client.delete("faces", [0, 1, 2, 3, 4, 9]) == 6
    assert seen == {"s0": [0, 3, 9], "s1": [1, 4], "s2": [2]}


async def test_every_call_carries_the_token_to_every_shard() -> None:
    seen: list[tuple[str, str | None]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization")))
        return httpx.Response(200, json={"deleted": 1})

    urls = ["http://s0", "http://s1"]
    async with SearchClient(urls, token="tok", transport=httpx.MockTransport(record)) as client:
        await client.delete("faces", [0, 1])
    assert sorted(seen) == [("s0", "Bearer tok"), ("s1", "Bearer tok")]
    seen.clear()
    async with SearchClient(urls[:1], transport=httpx.MockTransport(record)) as client:
        await client.delete("faces", [0])
    assert seen == [("s0", None)]
