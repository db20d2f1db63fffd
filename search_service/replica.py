"""Device copies of a collection (GPU) with tombstoned deletes, and hit filtering.

A :class:`Replica` is a copy of the primary CPU index on a :class:`ReplicaDevice`.
Every call on it runs on the device's single worker thread. Device indexes have no
``remove_ids``: deleted ids are tombstoned, searches over-fetch ``k + tombstones`` and
drop them (:func:`top_live`), and before there are too many tombstones the collection
replaces the copy with a fresh one of the primary (:meth:`Replica.rebuild`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import faiss
import numpy as np

from search_service import faiss_index
from search_service.device import ReplicaDevice
from search_service.errors import Unavailable
from search_service.faiss_index import CopyIndex
from search_service.vectors import IdArray, Matrix

Hits = list[list[tuple[int, float]]]
T = TypeVar("T")
CopyOfPrimary = Callable[[CopyIndex], faiss.Index]
"""Runs a :data:`CopyIndex` on the primary index (``IndexState.copy_with``)."""


class CopyLost(Exception):
    """The replica has no copy: its last rebuild failed."""


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
        self._index: faiss.Index | None = index
        self._dead: set[int] = set()
        self._dead_array: IdArray = np.empty(0, np.int64)
        self.failure: str | None = None
        """Why the last rebuild failed, while there is no copy."""

    @classmethod
    def of(cls, device: ReplicaDevice, copy_of_primary: CopyOfPrimary) -> Replica:
        """A replica holding a new copy of the primary; blocking, never called on the worker."""
        return cls(device, device.worker.submit(copy_of_primary, device.copy).result())

    @property
    def tombstones(self) -> int:
        return len(self._dead)

    @property
    def lost(self) -> bool:
        return self._index is None

    def has_tombstoned(self, ids: IdArray) -> bool:
        return bool(self._dead) and not self._dead.isdisjoint(ids.tolist())

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.device.worker, fn, *args)

    async def search(self, queries: Matrix, k: int) -> Hits:
        """Top ``k`` live hits of each query (shape (m, dim)); :class:`CopyLost` without a copy."""

        def run() -> Hits:
            # Read on the worker, after any rebuild queued before this search.
            index, dead = self._index, self._dead_array
            if index is None:
                raise CopyLost(self.failure)
            if k + dead.size > self.device.max_k:
                # The collection rebuilds before this can happen; faiss would refuse the search.
                raise Unavailable(
                    f"{dead.size} deleted vectors await a rebuild of the copy on {self.device.name}",
                    slug="device-copy-stale",
                )
            scores, ids = faiss_index.search(index, queries, k + dead.size)
            return top_live(scores, ids, dead, k)

        result: Hits = await self._run(run)
        return result

    async def add(self, ids: IdArray, vectors: Matrix) -> None:
        """Add ``vectors`` (n, dim) under ``ids`` (n,); ids must not be tombstoned."""

        def run() -> None:
            if self._index is None:
                raise CopyLost(self.failure)
            self._index.add_with_ids(vectors, ids)

        await self._run(run)

    async def release(self) -> None:
        """Free the copy on the worker, where every other call on the device's resources runs."""

        def drop() -> None:
            self._index = None

        if self._index is not None:
            await self._run(drop)

    def tombstone(self, ids: IdArray) -> None:
        self._dead.update(ids.tolist())
        self._dead_array = np.fromiter(self._dead, np.int64, len(self._dead))

    async def rebuild(self, copy_of_primary: CopyOfPrimary) -> None:
        """Replace the copy with a fresh one of the primary, without tombstones.

        The old copy is freed first, so the device never holds two copies of a collection;
        if the new one cannot be made (out of memory), there is no copy (:attr:`lost`) until a
        later rebuild succeeds. Searches queued meanwhile wait on the worker.
        """

        def swap() -> None:
            self._index = None
            self._dead.clear()
            self._dead_array = np.empty(0, np.int64)
            try:
                self._index = copy_of_primary(self.device.copy)
            except Exception as error:
                self.failure = str(error) or type(error).__name__
                raise
            self.failure = None

        await self._run(swap)
