"""One collection: a primary FAISS index made durable by a write-ahead log + snapshots.

Write path (one writer at a time per collection, an ``asyncio.Lock``): validate against
the current ids, append the record to the log and fsync it, apply it to the primary
index, then to the device replica if any, then answer. Writes run in a shielded task so
a client that goes away cannot interrupt one half-way. Searches do not take the writer
lock: they run concurrently in the thread pool (or on the device copy's worker,
:mod:`search_service.device_copy`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from search_service import faiss_index
from search_service.device import Device, ReplicaDevice
from search_service.device_copy import DeviceCopy
from search_service.errors import Conflict, NotFound
from search_service.index_state import IndexState
from search_service.persistence import CollectionFiles
from search_service.replica import Hits
from search_service.schema import CollectionInfo, CollectionSpec
from search_service.vectors import IdArray, Matrix
from search_service.wal import LogRecord, LogWriter, replay

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    snapshot_every_records: int = 1000
    snapshot_every_bytes: int = 1 << 30
    max_tombstones: int = 1024


def _recover(files: CollectionFiles, spec: CollectionSpec) -> tuple[IndexState, int, LogWriter]:
    """Load the latest snapshot and replay the logs after it (idempotently)."""
    seq, snapshot = files.latest_snapshot()
    index = files.read_snapshot(snapshot) if snapshot else faiss_index.new_index(spec)
    state = IndexState(spec, index)
    files.remove_older_than(seq)
    logs = files.logs_from(seq)
    replayed = 0
    for _, path in logs:
        for record in replay(path):
            replayed += 1
            # A snapshot interrupted after its new log was started replays a delete
            # twice; skipping present/absent ids makes every record idempotent.
            if record.op == "add":
                assert record.vectors is not None
                keep = ~np.isin(record.ids, state.present(record.ids))
                if keep.any():
                    state.add(record.ids[keep], np.ascontiguousarray(record.vectors[keep]))
            elif record.op == "delete":
                gone = state.present(record.ids)
                if gone.size:
                    state.delete(gone)
    log_seq = logs[-1][0] if logs else seq
    writer = LogWriter(files.log_path(log_seq))
    writer.records = replayed
    logger.info(
        "collection %s: snapshot %d, %d log records replayed, %d vectors",
        files.directory.name,
        seq,
        replayed,
        state.count,
    )
    # The next snapshot must be numbered after the segment being appended to: reusing
    # that number would first discard the segment's acknowledged records.
    return state, log_seq, writer


class Collection:
    def __init__(self, name: str, directory: Path, device: Device, pool: Executor, limits: Limits) -> None:
        """Open (recovering) the collection stored in ``directory``; blocking."""
        self.name = name
        self.files = CollectionFiles(directory)
        self.spec = self.files.read_spec()
        self.state, self._seq, self._log = _recover(self.files, self.spec)
        self._pool = pool
        self._limits = limits
        self._mutex = asyncio.Lock()
        self._closed = False
        self._snapshot_task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        if self.state.tombstones and len(self.state.tombstones) > limits.max_tombstones:
            self.state.compact()
        self._copy: DeviceCopy | None = None
        if isinstance(device, ReplicaDevice):
            self._copy = DeviceCopy.open(
                name, self.spec, device, self.state, limits.max_tombstones, self._exclusive
            )

    @property
    def device(self) -> str:
        return self._copy.searched_on if self._copy else "cpu"

    @property
    def has_device_copy(self) -> bool:
        return self._copy is not None

    @property
    def device_copy_lost(self) -> bool:
        return self._copy is not None and self._copy.replica.lost

    def info(self) -> CollectionInfo:
        return CollectionInfo(
            name=self.name,
            dim=self.spec.dim,
            count=self.state.count,
            checksum=self.state.checksum,
            index=self.spec.index,
            device=self.device,
            memory_bytes=faiss_index.memory_bytes(self.state.index),
        )

    async def _in_pool(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _exclusive(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` under the writer lock in a task the caller cannot cancel."""

        async def locked() -> T:
            async with self._mutex:
                if self._closed:
                    raise NotFound(f"collection {self.name!r} does not exist")
                return await work()

        task = asyncio.ensure_future(locked())
        self._pending.add(task)  # keep a reference until it is done
        task.add_done_callback(self._pending.discard)
        return await asyncio.shield(task)

    async def add(self, ids: IdArray, vectors: Matrix) -> int:
        """Add unit ``vectors`` (n, dim) under ``ids`` (n,); durable on return."""

        async def work() -> int:
            clash = self.state.present(ids)
            if clash.size:
                raise Conflict(f"ids already in {self.name!r}: {clash[:10].tolist()}", slug="duplicate-ids")
            if ids.size == 0:
                return 0
            await asyncio.to_thread(self._log.append, LogRecord("add", ids, vectors))
            replaced = await self._in_pool(self.state.add, ids, vectors)
            if self._copy is not None:
                await self._copy.added(ids, vectors, replaced=replaced)
            self._after_write()
            return int(ids.size)

        return await self._exclusive(work)

    async def delete(self, ids: IdArray) -> int:
        """Delete those of ``ids`` (n,) that are present; durable on return."""

        async def work() -> int:
            gone = self.state.present(ids)
            if gone.size == 0:
                return 0
            await asyncio.to_thread(self._log.append, LogRecord("delete", gone))
            await self._in_pool(self.state.delete, gone)
            if len(self.state.tombstones) > self._limits.max_tombstones:
                await self._in_pool(self.state.compact)
            if self._copy is not None:
                await self._copy.deleted(gone)
            self._after_write()
            return int(gone.size)

        return await self._exclusive(work)

    async def search(self, queries: Matrix, k: int) -> Hits:
        """Top ``k`` hits of each unit query (m, dim), best first."""
        if self._closed:
            raise NotFound(f"collection {self.name!r} does not exist")
        if self._copy is not None:
            hits = await self._copy.search(queries, k)
            if hits is not None:
                return hits
        return await self._in_pool(self.state.search, queries, k)

    async def ids(self, after: int, limit: int) -> tuple[IdArray, bool]:
        """The smallest ``limit`` ids above ``after``, ascending (k,), and whether more
        follow; from the primary, which a device replica only mirrors."""
        if self._closed:
            raise NotFound(f"collection {self.name!r} does not exist")
        return await self._in_pool(self.state.ids_after, after, limit)

    def _after_write(self) -> None:
        due = (
            self._log.records >= self._limits.snapshot_every_records
            or self._log.size >= self._limits.snapshot_every_bytes
        )
        if due and (self._snapshot_task is None or self._snapshot_task.done()):
            self._snapshot_task = asyncio.create_task(self._background_snapshot())

    async def _background_snapshot(self) -> None:
        try:
            await self.snapshot()
        except NotFound:
            pass
        except Exception:
            logger.exception("snapshot of collection %s failed", self.name)

    async def snapshot(self) -> None:
        """Write a snapshot and start a new log; the old log is removed after."""
        await self._exclusive(self._snapshot_locked)

    async def _snapshot_locked(self) -> None:
        if self._log.records == 0 and self.files.latest_snapshot()[1] is not None:
            return
        seq = self._seq + 1
        new_log = self.files.log_path(seq)

        def write() -> LogWriter:
            new_log.unlink(missing_ok=True)  # leftover of a failed attempt
            writer = LogWriter(new_log)
            try:
                # Tombstoned vectors are inside the snapshot: the new log starts by
                # deleting them again, before the snapshot becomes visible.
                if self.state.tombstones:
                    writer.append(LogRecord("delete", self.state.tombstone_ids()))
                self.state.write_snapshot(self.files, seq)
            except BaseException:
                writer.close()
                new_log.unlink(missing_ok=True)
                raise
            return writer

        writer = await asyncio.to_thread(write)
        old, self._log, self._seq = self._log, writer, seq
        old.close()
        await asyncio.to_thread(self.files.remove_older_than, seq)
        logger.info("collection %s: snapshot %d written (%d vectors)", self.name, seq, self.state.count)

    async def close(self, *, snapshot: bool) -> None:
        """Stop accepting work; with ``snapshot`` write a final snapshot first."""
        if self._snapshot_task is not None:
            await self._snapshot_task
        if snapshot and not self._closed:
            await self.snapshot()

        async def shut() -> None:
            self._closed = True
            self._log.close()

        if not self._closed:
            await self._exclusive(shut)
        if self._copy is not None:
            await self._copy.close()
