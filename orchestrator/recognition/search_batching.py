"""Concurrent searches of one collection leave together, as one batch search.

Dynamic batching for the search service, without a delay: a search that finds no call in
flight for its (collection, k) goes at once; searches that arrive while one is in flight
wait for it and then leave together in the next call. Alone, a request pays nothing; under
load, N requests share one HTTP round trip and one FAISS batch.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from orchestrator.clients.search_backend import SearchBackend
from search_service.schema import Hit

Waiter = tuple[npt.NDArray[np.float32], "asyncio.Future[list[list[Hit]]]"]


@dataclass
class _Lane:
    waiting: list[Waiter] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class SearchBatcher:
    def __init__(self, client: SearchBackend, max_queries: int = 256) -> None:
        self.client = client
        self.max_queries = max_queries
        self._lanes: dict[tuple[str, int], _Lane] = {}

    async def search(self, name: str, queries: npt.ArrayLike, k: int) -> list[list[Hit]]:
        """Top ``k`` hits (best first) for each query of ``queries`` (m, dim)."""
        rows = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        lane = self._lanes.setdefault((name, k), _Lane())
        answer: asyncio.Future[list[list[Hit]]] = asyncio.get_running_loop().create_future()
        lane.waiting.append((rows, answer))
        if lane.task is None:
            lane.task = asyncio.create_task(self._drain(name, k, lane))
        return await answer

    def _next_batch(self, lane: _Lane) -> list[Waiter]:
        batch: list[Waiter] = []
        count = 0
        while lane.waiting and (not batch or count + len(lane.waiting[0][0]) <= self.max_queries):
            waiter = lane.waiting.pop(0)
            if not waiter[1].done():  # its caller went away
                batch.append(waiter)
                count += len(waiter[0])
        return batch

    async def _drain(self, name: str, k: int, lane: _Lane) -> None:
        try:
            while batch := self._next_batch(lane):
                try:
                    hits = await self.client.search(name, np.concatenate([rows for rows, _ in batch]), k)
                except Exception as error:
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(error)
                    continue
                start = 0
                for rows, answer in batch:
                    if not answer.done():
                        answer.set_result(hits[start : start + len(rows)])
                    start += len(rows)
        finally:
            lane.task = None
