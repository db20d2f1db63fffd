"""SearchBatcher: concurrent searches share calls, each gets its own rows back, errors reach all."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import numpy as np
import pytest

from orchestrator.clients.search import SearchClient, SearchUnavailable
from orchestrator.recognition.search_batching import SearchBatcher
from search_service.schema import Hit

pytestmark = pytest.mark.unit


class RecordingClient:
    """Stands in for the search service: answers query i with one hit whose id is its first value."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, int, int]] = []
        self.fail = fail

    async def search(self, name: str, queries: np.ndarray, k: int) -> list[list[Hit]]:
        self.calls.append((name, len(queries), k))
        await asyncio.sleep(0.02)  # a call in flight, as over HTTP
        if self.fail:
            raise SearchUnavailable(503, {"title": "down"}, "http://search")
        return [[Hit(id=int(q[0]), score=1.0)] for q in queries]


def batcher(client: RecordingClient, **kwargs: Any) -> SearchBatcher:
    return SearchBatcher(cast(SearchClient, client), **kwargs)


def queries(*ids: int) -> np.ndarray:
    rows = np.zeros((len(ids), 4), np.float32)
    rows[:, 0] = ids
    return rows


async def test_a_lone_search_goes_at_once() -> None:
    client = RecordingClient()
    hits = await batcher(client).search("c", queries(7, 8), 5)
    assert [[h.id for h in row] for row in hits] == [[7], [8]]
    assert client.calls == [("c", 2, 5)]


async def test_concurrent_searches_share_calls_and_get_their_own_rows() -> None:
    client = RecordingClient()
    search = batcher(client)
    answers = await asyncio.gather(*(search.search("c", queries(i, 100 + i), 5) for i in range(10)))
    for i, hits in enumerate(answers):
        assert [[h.id for h in row] for row in hits] == [[i], [100 + i]]
    # All ten arrived before the call left: one call.
    assert client.calls == [("c", 20, 5)]


async def test_searches_that_arrive_during_a_call_leave_together_after_it() -> None:
    client = RecordingClient()
    search = batcher(client)
    first = asyncio.ensure_future(search.search("c", queries(0), 5))
    await asyncio.sleep(0.005)  # in flight
    later = [search.search("c", queries(i), 5) for i in range(1, 6)]
    answers = await asyncio.gather(first, *later)
    assert [hits[0][0].id for hits in answers] == list(range(6))
    assert client.calls == [("c", 1, 5), ("c", 5, 5)]


async def test_batches_respect_max_queries_and_lanes_per_collection_and_k() -> None:
    client = RecordingClient()
    search = batcher(client, max_queries=4)
    await asyncio.gather(
        *(search.search("c", queries(i), 5) for i in range(9)),
        search.search("other", queries(1), 5),
        search.search("c", queries(1), 10),
    )
    assert sorted(client.calls) == sorted(
        [("c", 1, 5), ("c", 4, 5), ("c", 4, 5), ("other", 1, 5), ("c", 1, 10)]
    )


async def test_an_error_reaches_every_search_of_the_batch_and_the_lane_recovers() -> None:
    client = RecordingClient(fail=True)
    search = batcher(client)
    results = await asyncio.gather(
        *(search.search("c", queries(i), 5) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, SearchUnavailable) for r in results)
    client.fail = False
    assert [h.id for h in (await search.search("c", queries(5), 5))[0]] == [5]


async def test_a_cancelled_search_is_left_out() -> None:
    client = RecordingClient()
    search = batcher(client)
    first = asyncio.ensure_future(search.search("c", queries(1), 5))
    await asyncio.sleep(0)  # the first call is in flight
    gone = asyncio.ensure_future(search.search("c", queries(2), 5))
    kept = asyncio.ensure_future(search.search("c", queries(3), 5))
    await asyncio.sleep(0)
    gone.cancel()
    assert [h.id for h in (await kept)[0]] == [3]
    await first
    assert client.calls == [("c", 1, 5), ("c", 1, 5)]
