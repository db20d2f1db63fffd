"""The recognition log: its entries, made for each recognised image, and written in batches.

One transaction per batch instead of one per answer: on SQLite a commit per request costs
more CPU than the request's database reads. An entry waits in memory at most ``flush_s``;
a process killed in that window loses those entries. That is the trade: the log records
answers already given, it is not a write the caller was promised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from orchestrator.accounts.principal import Principal
from orchestrator.core.errors import FacerecError
from orchestrator.core.logging import request_id_var
from orchestrator.db.gallery import Gallery
from orchestrator.db.tables import (
    FILENAME_MAX,
    LOG_TEXT_MAX,
    NAME_MAX,
    LogMatch,
    LogSource,
    RecognitionLogCreate,
)
from orchestrator.recognition.answers import RecognizeAnswer, best_matches

log = logging.getLogger(__name__)


def _text(value: str | None, limit: int) -> str | None:
    """Storable on every backend: no NUL (PostgreSQL refuses it), valid UTF-8, within the column."""
    if value is None:
        return None
    return value.encode("utf-8", "replace").decode().replace("\x00", "\ufffd")[:limit]


def _request_id() -> str | None:
    request_id = request_id_var.get()
    return None if request_id == "-" else request_id


@dataclass(frozen=True)
class Origin:
    """Who asked for a recognition, and from where: what its log entry says beside the answer."""

    principal: str
    """``key:<id>`` for an API key, ``user:<id>`` for a user."""
    source: LogSource = "api"
    job_id: int | None = None
    api_key_id: int | None = None
    filename: str | None = None
    request_id: str | None = field(default_factory=_request_id)
    """The request being served when the origin was made, if any."""

    @classmethod
    def of(cls, principal: Principal, filename: str | None = None) -> Origin:
        return cls(principal=principal.tag, api_key_id=principal.api_key_id, filename=filename)


def _entry(origin: Origin, image_sha256: str, **outcome: Any) -> RecognitionLogCreate:
    return RecognitionLogCreate(
        request_id=origin.request_id,
        source=origin.source,
        job_id=origin.job_id,
        principal=_text(origin.principal, NAME_MAX) or "",
        api_key_id=origin.api_key_id,
        filename=_text(origin.filename, FILENAME_MAX),
        image_sha256=image_sha256,
        **outcome,
    )


def answered(origin: Origin, image_sha256: str, answer: RecognizeAnswer) -> RecognitionLogCreate:
    """The entry of an answer: its faces, and the best match of each face that matched."""
    best = best_matches(answer)
    return _entry(
        origin,
        image_sha256,
        faces=len(answer.faces),
        matches=[LogMatch(person_id=m.person_id, name=m.name, similarity=m.similarity) for m in best],
        took_ms=answer.took_ms,
        model_version=answer.model_version,
        cached=answer.cached,
    )


def failed(
    origin: Origin, image_sha256: str, error: Exception, took_ms: float, model_version: str
) -> RecognitionLogCreate:
    """The entry of a recognition that ended in an error: its kind and, for a known one, its detail."""
    if isinstance(error, FacerecError):
        kind, detail = type(error).__name__, _text(error.detail, LOG_TEXT_MAX)
    else:  # a bug: its message may hold anything; the server's log has it, with its stack
        kind, detail = "InternalError", f"an unexpected {type(error).__name__}"
    return _entry(
        origin,
        image_sha256,
        status="error",
        error_type=kind,
        error_detail=detail,
        took_ms=took_ms,
        model_version=model_version,
    )


class RecognitionLogWriter:
    def __init__(
        self, gallery: Gallery, flush_s: float = 0.25, max_batch: int = 500, max_pending: int = 20_000
    ) -> None:
        self.gallery = gallery
        self.flush_s = flush_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: list[RecognitionLogCreate] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, entry: RecognitionLogCreate) -> None:
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
