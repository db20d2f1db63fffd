"""The threads' readers-writer lock: readers share, a writer is alone."""

from __future__ import annotations

import threading
import time

import pytest

from search_service.rwlock import ReadWriteLock

pytestmark = pytest.mark.unit


def test_readers_share_and_writer_excludes() -> None:
    lock = ReadWriteLock()
    inside: list[str] = []
    both_read = threading.Barrier(2, timeout=5)

    def reader() -> None:
        with lock.read():
            both_read.wait()  # two readers inside at once, or this times out
            inside.append("r")
            time.sleep(0.05)

    def writer() -> None:
        with lock.write():
            inside.append("w")

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    time.sleep(0.01)
    w = threading.Thread(target=writer)
    w.start()
    for t in [*readers, w]:
        t.join(5)
    assert inside == ["r", "r", "w"]
