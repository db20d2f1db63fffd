"""Device copies of a collection (GPU) with tombstoned deletes, and hit filtering.

A :class:`Replica` is a copy of the primary CPU index on a :class:`ReplicaDevice`.
Every call on it runs on the device's single worker thread. Device indexes have no
``remove_ids``: deleted ids are tombstoned, searches over-fetch ``k + tombstones`` and
drop them (:func:`top_live`), and once there are too many tombstones the collection
builds a fresh copy aside and swaps it in (:meth:`Replica.replace`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import faiss
import numpy as np

from search_service import faiss_index
from search_service.device import ReplicaDevice
from search_service.vectors import IdArray, Matrix

Hits = list[list[tuple[int, float]]]
T = TypeVar("T")


def top_live(scores: Matrix, ids: IdArray, dead: IdArray, k: int) -> Hits:
    """Per query, the first ``k`` hits that are real (id >= 0) and not in ``dead``.

    ``scores`` and ``ids`` have shape (m, kk), best first; ``dead`` shape (t,).
    """
    keep = ids >= 0
    if dead.size:
        keep &= ~np.isin(ids, dead)
    hits: Hits = []
    for row_scores, row_ids, row_keep in zip(scores, ids, keep, strict=True):
        cols = np.flatnonzero(row_keep)[:k]
        hits.append(list(zip(row_ids[cols].tolist(), row_scores[cols].tolist(), strict=True)))
    return hits


class Replica:
    """A device copy of the primary index; not thread-safe, so used via one worker."""

    def __init__(self, device: ReplicaDevice, index: faiss.Index) -> None:
        self.device = device
        self._index = index
        self._dead: set[int] = set()
        self._dead_array: IdArray = np.empty(0, np.int64)

    @property
    def tombstones(self) -> int:
        return len(self._dead)

    def has_tombstoned(self, ids: IdArray) -> bool:
        return bool(self._dead) and not self._dead.isdisjoint(ids.tolist())

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.device.worker, fn, *args)

    async def search(self, queries: Matrix, k: int) -> Hits:
        """Top ``k`` live hits of each query (shape (m, dim))."""
        dead = self._dead_array  # the tombstones as of this call

        def run() -> Hits:
            scores, ids = faiss_index.search(self._index, queries, k + dead.size)
            return top_live(scores, ids, dead, k)

        result: Hits = await self._run(run)
        return result

    async def add(self, ids: IdArray, vectors: Matrix) -> None:
        """Add ``vectors`` (n, dim) under ``ids`` (n,); ids must not be tombstoned."""
        await self._run(self._index.add_with_ids, vectors, ids)

    def tombstone(self, ids: IdArray) -> None:
        self._dead.update(ids.tolist())
        self._dead_array = np.fromiter(self._dead, np.int64, len(self._dead))

    async def replace(self, index: faiss.Index) -> None:
        """Swap in a fresh copy (built aside from the primary) and forget the tombstones."""

        def swap() -> None:
            self._index = index

        await self._run(swap)
        self._dead.clear()
        self._dead_array = np.empty(0, np.int64)
