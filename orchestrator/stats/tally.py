"""What a request's recognitions found, counted for its minute's statistics.

The HTTP layer opens a tally around each request; the recognition service adds to the one
open in its context, knowing nothing of HTTP. Outside a request (a job) nothing is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class Tally:
    faces: int = 0
    cache_hits: int = 0


_current: ContextVar[Tally | None] = ContextVar("request_tally", default=None)


@contextmanager
def tallying() -> Iterator[Tally]:
    """A fresh tally for the block; what the block's recognitions count lands in it."""
    tally = Tally()
    token = _current.set(tally)
    try:
        yield tally
    finally:
        _current.reset(token)


def count_recognition(faces: int, cached: bool) -> None:
    """Add one recognised image to the tally of the request it belongs to, if any."""
    tally = _current.get()
    if tally is not None:
        tally.faces += faces
        tally.cache_hits += int(cached)
