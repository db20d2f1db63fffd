"""The recognition log writer: batches, flushes on close, keeps entries while the database fails."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.db import Gallery
from orchestrator.db.tables import RecognitionLogCreate
from orchestrator.recognition.log_writer import RecognitionLogWriter


def entry(i: int) -> RecognitionLogCreate:
    return RecognitionLogCreate(image_sha256="0" * 64, filename=f"{i}.jpg", model_version="1", took_ms=1.0)


def logged(gallery: Gallery) -> list[int]:
    items, _ = gallery.recognition_log(limit=1000)
    return sorted(int((e.filename or "").removesuffix(".jpg")) for e in items)


async def test_entries_reach_the_database_in_batches(
    gallery: Gallery, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    write = gallery.log_recognitions
    monkeypatch.setattr(gallery, "log_recognitions", lambda b: (batches.append(len(b)), write(b))[1])
    writer = RecognitionLogWriter(gallery, flush_s=0.05, max_batch=100)
    await writer.start()
    for i in range(250):
        writer.add(entry(i))
    for _ in range(200):  # three ticks of 0.05 s, however slow a loaded machine makes them
        if len(logged(gallery)) == 250:
            break
        await asyncio.sleep(0.05)
    assert logged(gallery) == list(range(250))
    assert batches == [100, 100, 50]
    await writer.close()


async def test_close_flushes_what_is_pending(gallery: Gallery) -> None:
    writer = RecognitionLogWriter(gallery, flush_s=3600)
    await writer.start()
    for i in range(7):
        writer.add(entry(i))
    assert logged(gallery) == []
    await writer.close()
    assert logged(gallery) == list(range(7))


async def test_a_failed_write_keeps_the_batch_and_the_bound(
    gallery: Gallery, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = RecognitionLogWriter(gallery, flush_s=3600, max_batch=10, max_pending=15)
    write = gallery.log_recognitions

    def down(batch: list[RecognitionLogCreate]) -> None:
        raise ConnectionError("database down")

    monkeypatch.setattr(gallery, "log_recognitions", down)
    for i in range(12):
        writer.add(entry(i))
    assert not await writer.flush()
    for i in range(12, 20):
        writer.add(entry(i))  # 20 > 15: the oldest 5 go
    assert writer.dropped == 5
    monkeypatch.setattr(gallery, "log_recognitions", write)
    await writer.close()
    assert logged(gallery) == list(range(5, 20))
