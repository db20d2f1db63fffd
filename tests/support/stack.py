"""A running stack for end-to-end tests and load runs: search service and orchestrator as
child processes on free ports over a given Triton, so callers can kill and restart them.

Shared by ``tests/e2e``, ``tests/load``, ``tests/monitoring`` and ``loadtests/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType

import httpx
import redis

from orchestrator.runtime.triton_server import TritonServer
from tests.conftest import unavailable
from tests.support.processes import ChildProcess, JobWorkerProcess, MilvusLiteProcess, SearchServiceProcess

ADMIN_KEY = "frk_e2e-admin-key-for-tests-only-0123456789"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
BACKENDS = ("faiss", "milvus")
"""The search backends (``FACEREC_SEARCH__BACKEND``) a stack can run on."""


def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except redis.RedisError as error:
        unavailable(f"Redis at {REDIS_URL} is not reachable: {error}")
    return REDIS_URL


def sqlite_url(root: Path) -> str:
    return f"sqlite:///{root / 'facerec.db'}"


class Stack:
    """``cache_url=None`` runs without a cache, whatever REDIS_URL the caller's environment has.

    ``backend="milvus"`` puts Milvus Lite's server where the search service was (``search``),
    as ``facerec up`` does with that backend."""

    api_timeout_s = 90.0

    def __init__(
        self,
        root: Path,
        triton: TritonServer,
        database_url: str,
        cache_url: str | None,
        api_env: dict[str, str | None] | None = None,
        backend: str = "faiss",
    ) -> None:
        self.root = root
        self.triton = triton
        self.database_url = database_url
        self.cache_url = cache_url
        self.backend = backend
        self.search: SearchServiceProcess | MilvusLiteProcess
        if backend == "milvus":
            self.search = MilvusLiteProcess(root / "milvus.db", log_dir=root / "logs")
            search_env: dict[str, str | None] = {
                "FACEREC_SEARCH__BACKEND": "milvus",
                "FACEREC_SEARCH__MILVUS_URI": self.search.url,
                "FACEREC_SEARCH_URLS": None,
            }
        else:
            self.search = SearchServiceProcess(root / "search", log_dir=root / "logs")
            search_env = {
                "FACEREC_SEARCH__BACKEND": "faiss",
                "FACEREC_SEARCH_URLS": json.dumps([self.search.url]),
            }
        env: dict[str, str | None] = {
            "FACEREC_DATA_DIR": str(root),
            "FACEREC_TRITON__URL": triton.grpc_url,
            "FACEREC_TRITON__TIMEOUT_S": "60",
            **search_env,
            "FACEREC_SEARCH_TOKEN": self.search.token,
            "FACEREC_ADMIN_KEY": ADMIN_KEY,
            "DATABASE_URL": database_url,
            "FACEREC_API__MAX_BODY_BYTES": str(8 * 1024 * 1024),
            # One process, whose pid is the server's: tests kill it, and read its memory.
            "FACEREC_API__WORKERS": "1",
            "REDIS_URL": cache_url,
            "FACEREC_REDIS_URL": None,
            **(api_env or {}),
        }
        self.api = ChildProcess(
            "orchestrator",
            ["-m", "orchestrator.cli", "orchestrator", "--port", "{port}"],
            root / "logs",
            env,
            "/health/ready",
        )

    @property
    def url(self) -> str:
        return self.api.url

    def pids(self) -> dict[str, int]:
        """Processes to watch for memory; Triton's stubs are its children."""
        found = {"triton": self.triton.pid, "search": self.search.pid, "orchestrator": self.api.pid}
        return {name: pid for name, pid in found.items() if pid}

    def start(self) -> Stack:
        self.root.mkdir(parents=True, exist_ok=True)
        self.search.start().wait_ready()
        self.api.start().wait_ready(self.api_timeout_s)
        return self

    def stop(self) -> None:
        self.api.stop()
        self.search.stop()

    def job_worker(
        self, name: str, concurrency: int = 8, env: dict[str, str] | None = None
    ) -> JobWorkerProcess:
        """A ``facerec worker`` on this stack's services and database (not started)."""
        return JobWorkerProcess(name, self.root / "logs", {**self.api.env, **(env or {})}, concurrency)

    def client(self, key: str | None = ADMIN_KEY) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.api.url, headers=headers, timeout=120.0)

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
