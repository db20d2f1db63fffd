"""A collection's copy on a device (GPU), kept in step with its primary CPU index.

After each write, under the collection's writer lock, :meth:`DeviceCopy.added` and
:meth:`DeviceCopy.deleted` mirror it: adds go to the copy, deletes are tombstoned, and the
copy is rebuilt from the primary instead when the add replaced the primary (ivf just
trained), re-adds a tombstoned id, or the tombstones would pass :attr:`max_tombstones`:
every search asks faiss for k + tombstones hits, and a GPU search for more than
:data:`~search_service.device.GPU_MAX_K` fails.

A copy that cannot be rebuilt (out of memory) is lost, not dropped: the write stands (it is in
the log and the primary), the failure is logged, searches answer 503 (or search the primary,
with ``gpu-or-cpu``), and the rebuild is retried, backing off, until it succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable

from search_service.device import ReplicaDevice
from search_service.errors import NotFound, Unavailable
from search_service.index_state import IndexState
from search_service.replica import CopyLost, Hits, Replica
from search_service.schema import MAX_K, CollectionSpec
from search_service.vectors import IdArray, Matrix

logger = logging.getLogger(__name__)

HEAL_DELAYS_S = (10.0, 30.0, 60.0, 300.0)
"""Waits before each new attempt at a lost copy; the last one repeats."""

Exclusive = Callable[[Callable[[], Awaitable[bool]]], Awaitable[bool]]
"""Runs work under the collection's writer lock (``NotFound`` once it is closed)."""


class DeviceCopy:
    def __init__(
        self, name: str, replica: Replica, state: IndexState, max_tombstones: int, exclusive: Exclusive
    ) -> None:
        self.name = name
        self.replica = replica
        self._state = state
        self.max_tombstones = min(max_tombstones, replica.device.max_k - MAX_K)
        self._exclusive = exclusive
        self._heal_task: asyncio.Task[None] | None = None

    @classmethod
    def open(
        cls,
        name: str,
        spec: CollectionSpec,
        device: ReplicaDevice,
        state: IndexState,
        max_tombstones: int,
        exclusive: Exclusive,
    ) -> DeviceCopy | None:
        """The copy of a collection just opened, or None where it stays on the CPU; blocking."""
        if spec.index == "hnsw":
            return None  # faiss has no GPU HNSW
        beyond = device.beyond_limits(spec)
        if beyond is not None:
            # Made on a CPU shard, or before the limit was checked: faiss would refuse the copy.
            logger.warning("collection %s stays on the CPU: %s", name, beyond)
            return None
        return cls(name, Replica.of(device, state.copy_with), state, max_tombstones, exclusive)

    @property
    def device(self) -> ReplicaDevice:
        return self.replica.device

    @property
    def searched_on(self) -> str:
        """``gpu:N``, or ``cpu`` for a lost copy whose collection searches its primary."""
        return "cpu" if self.replica.lost and self.device.search_primary_when_lost else self.device.name

    async def search(self, queries: Matrix, k: int) -> Hits | None:
        """Top ``k`` hits of each query (m, dim); None when the primary must answer instead."""
        try:
            return await self.replica.search(queries, k)
        except CopyLost as lost:
            if self.device.search_primary_when_lost:
                return None
            raise Unavailable(
                f"the copy of collection {self.name!r} on {self.device.name} could not be rebuilt "
                f"({lost}); searches resume once a retry succeeds",
                slug="device-copy-lost",
            ) from lost

    async def added(self, ids: IdArray, vectors: Matrix, *, replaced: bool) -> None:
        """Mirror an add of ``vectors`` (n, dim) under ``ids`` (n,) already in the primary."""
        if self.replica.lost:
            return  # _heal copies the primary, this add included
        if replaced or self.replica.has_tombstoned(ids):
            await self._rebuild()
            return
        try:
            await self.replica.add(ids, vectors)
        except Exception:
            # A copy that failed half-way through an add would miss results: make it anew.
            logger.exception("adding to the copy of %s failed; rebuilding it", self.name)
            await self._rebuild()

    async def deleted(self, gone: IdArray) -> None:
        """Mirror a delete of ``gone`` (n,) already out of the primary."""
        if self.replica.lost:
            return
        if self.replica.tombstones + gone.size > self.max_tombstones:
            await self._rebuild()
        else:
            self.replica.tombstone(gone)

    async def _rebuild(self) -> None:
        try:
            await self.replica.rebuild(self._state.copy_with)
        except Exception:
            meanwhile = "search the CPU" if self.device.search_primary_when_lost else "answer 503"
            logger.exception(
                "collection %s: its copy on %s could not be rebuilt; searches %s until a retry succeeds",
                self.name,
                self.device.name,
                meanwhile,
            )
            if self._heal_task is None or self._heal_task.done():
                self._heal_task = asyncio.create_task(self._heal())

    async def _heal(self) -> None:
        """Retry the rebuild, backing off, until the copy is back or the collection closes."""

        async def attempt() -> bool:
            try:
                await self.replica.rebuild(self._state.copy_with)
            except Exception as error:
                logger.warning("collection %s: rebuilding its copy failed again: %s", self.name, error)
                return False
            logger.info("collection %s: its copy on %s is back", self.name, self.device.name)
            return True

        for n in itertools.count():
            await asyncio.sleep(HEAL_DELAYS_S[min(n, len(HEAL_DELAYS_S) - 1)])
            try:
                if await self._exclusive(attempt):
                    return
            except NotFound:  # the collection closed
                return

    async def close(self) -> None:
        """Stop healing and free the copy (the collection is closed: nothing searches it)."""
        if self._heal_task is not None:
            self._heal_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heal_task
        await self.replica.release()
