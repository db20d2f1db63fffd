"""The running stack for end-to-end tests: real Triton, search service, Redis and database.

The database is SQLite in a temporary dir unless DATABASE_URL names another; Redis is
REDIS_URL or the local server (db 14). The stack itself is :class:`tests.support.stack.Stack`.
Its search backend is ``search_backend``: the FAISS service here; a module that overrides
the fixture with ``params=BACKENDS`` runs its tests on each backend in turn.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from orchestrator.runtime.triton_server import TritonServer
from tests.support.stack import Stack, redis_url, sqlite_url


@pytest.fixture(scope="module")
def search_backend() -> str:
    return "faiss"


@pytest.fixture(scope="module")
def stack(
    triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory, search_backend: str
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp(f"stack-{search_backend}")
    database_url = os.environ.get("DATABASE_URL") or sqlite_url(root)
    running = Stack(root, triton_server, database_url, redis_url(), backend=search_backend)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client() as client:
        yield client
