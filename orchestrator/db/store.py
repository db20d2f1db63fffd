"""What every part of the gallery shares: the engine and one session per operation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from orchestrator.core.errors import InvalidRequest
from orchestrator.db.engine import WRITE

T = TypeVar("T")
U = TypeVar("U")

CHUNK = 500
"""Ids per IN (...) list: well under SQLite's and the servers' parameter limits."""
MAX_PAGE = 1000
"""Rows one listing answers at most."""


class Store:
    """Synchronous and thread-safe; the async app calls it through ``asyncio.to_thread``.

    ``engine`` must come from :func:`orchestrator.db.engine.make_engine`, whose SQLite
    set-up (foreign keys, WAL, BEGIN IMMEDIATE for writes) the gallery relies on.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(**{WRITE: True})

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with Session(self._engine) as session:
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            yield session


def valid(check: Callable[[T], U], value: T) -> U:
    """Apply a ``clean_*`` rule from the tables module; its ValueError becomes a 422."""
    try:
        return check(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(str(exc)) from None


def check_page(limit: int, offset: int) -> None:
    """A listing's page: 1..``MAX_PAGE`` rows from ``offset`` ≥ 0, else 422."""
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidRequest(f"limit must be 1..{MAX_PAGE} and offset at least 0")


def chunks(values: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
