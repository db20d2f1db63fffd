"""The recognition log, written in batches off the request path.

One transaction per batch instead of one per answer: on SQLite a commit per request costs
more CPU than the request's database reads. An entry waits in memory at most ``flush_s``;
a process killed in that window loses those entries. That is the trade: the log records
answers already given, it is not a write the caller was promised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from orchestrator.db.gallery import Gallery
from orchestrator.db.tables import RecognitionLog

log = logging.getLogger(__name__)


class RecognitionLogWriter:
    def __init__(
        self, gallery: Gallery, flush_s: float = 0.25, max_batch: int = 500, max_pending: int = 20_000
    ) -> None:
        self.gallery = gallery
        self.flush_s = flush_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: list[RecognitionLog] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, entry: RecognitionLog) -> None:
        # Bounded: with the database down for long, the oldest entries go, not the memory.
        if len(self._pending) >= self.max_pending:
            del self._pending[0]
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("recognition log: %d entries dropped; the database lags", self.dropped)
        self._pending.append(entry)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="recognition-log")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._pending and await self.flush():
            pass

    async def flush(self) -> bool:
        """Write the oldest batch; False when the write failed (the batch stays queued)."""
        batch = self._pending[: self.max_batch]
        del self._pending[: len(batch)]
        if not batch:
            return True
        try:
            await asyncio.to_thread(self.gallery.log_recognitions, batch)
        except Exception as error:
            log.warning("recognition log: writing %d entries failed: %s", len(batch), error)
            room = self.max_pending - len(self._pending)
            if room > 0:
                self._pending[:0] = batch[-room:]  # back in front, newest kept if short of room
            return False
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            # Catch up in full batches; one partial batch per tick.
            while await self.flush() and len(self._pending) >= self.max_batch:
                pass
