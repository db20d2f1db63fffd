"""Helpers for the search service tests: real service processes, in-process apps, data.

Service processes run ``python -m search_service`` on a free port and are stopped by
their pid (SIGTERM for a clean stop, SIGKILL to simulate a crash).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from orchestrator.clients.search import SearchClient
from search_service.app import create_app
from search_service.collection import Collection, Limits
from search_service.device import CpuDevice, Device
from search_service.persistence import CollectionFiles
from search_service.schema import CollectionSpec
from search_service.settings import SearchSettings
from tests.support.processes import SearchServiceProcess as ServiceProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    with ServiceProcess(tmp_path / "search") as proc:
        yield proc


@contextlib.asynccontextmanager
async def app_client(settings: SearchSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process app (lifespan run) behind an httpx client."""
    app: FastAPI = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://search", timeout=30
        ) as client,
    ):
        yield client


class _ByHost(httpx.AsyncBaseTransport):
    """Hands each request to the in-process app its URL's host names."""

    def __init__(self, apps: Mapping[str, FastAPI]) -> None:
        self._transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transports[request.url.host].handle_async_request(request)


@contextlib.asynccontextmanager
async def sharded_client(data_dir: Path, shards: int, *, token: str) -> AsyncIterator[SearchClient]:
    """The orchestrator's client over ``shards`` in-process apps (lifespans run), each
    its own shard ``i/shards`` with data under ``data_dir/shard<i>``."""
    apps = {
        f"shard{i}": create_app(
            SearchSettings(
                data_dir=data_dir / f"shard{i}",
                device="cpu",
                search_threads=2,
                shard=f"{i}/{shards}",
                token=SecretStr(token),
            )
        )
        for i in range(shards)
    }
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        urls = [f"http://{host}" for host in apps]
        yield await stack.enter_async_context(
            SearchClient(urls, token=token, timeout=30, transport=_ByHost(apps))
        )


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> npt.NDArray[np.float32]:
    """(n, dim) random unit float32 vectors."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_vectors(rng: np.random.Generator, n: int, dim: int, clusters: int) -> npt.NDArray[np.float32]:
    """(n, dim) unit vectors around ``clusters`` centres, like face embeddings of people."""
    centres = unit_vectors(rng, clusters, dim)
    x = centres[rng.integers(0, clusters, n)] + 0.15 * unit_vectors(rng, n, dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(
    gallery: npt.NDArray[np.float32], ids: npt.NDArray[np.int64], probes: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Exact top-k by inner product: ids (m, k) and scores (m, k), best first."""
    scores = probes.astype(np.float64) @ gallery.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[order], np.take_along_axis(scores, order, axis=1).astype(np.float32)


def assert_same_topk(
    got_ids: list[list[int]],
    got_scores: list[list[float]],
    want_ids: npt.NDArray[np.int64],
    want_scores: npt.NDArray[np.float32],
) -> None:
    """Equal scores (to float32 rounding) and ids, except swaps among near-equal scores."""
    assert [len(r) for r in got_ids] == [len(r) for r in want_ids]
    np.testing.assert_allclose(np.array(got_scores), want_scores, atol=1e-5)
    for got, want, scores in zip(got_ids, want_ids, want_scores, strict=True):
        if list(got) != list(want):
            # Only tolerate a different order where neighbouring scores are tied.
            ties = np.abs(np.diff(scores)) < 1e-5
            assert ties.any() and sorted(got) == sorted(want), (got, want.tolist())


@pytest.fixture(scope="session")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4, thread_name_prefix="test-search") as executor:
        yield executor


class CollectionOpener:
    """Creates (if new) and opens collections; the fixture closes them at the end."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool
        self.opened: list[Collection] = []

    def __call__(
        self,
        directory: Path,
        spec: CollectionSpec,
        *,
        device: Device | None = None,
        limits: Limits | None = None,
    ) -> Collection:
        if not directory.exists():
            directory.mkdir(parents=True)
            CollectionFiles(directory).write_spec(spec)
        collection = Collection(
            directory.name, directory, device or CpuDevice(), self.pool, limits or Limits()
        )
        self.opened.append(collection)
        return collection


@pytest.fixture
async def open_collection(pool: ThreadPoolExecutor) -> AsyncIterator[CollectionOpener]:
    opener = CollectionOpener(pool)
    yield opener
    for collection in opener.opened:
        await collection.close(snapshot=False)
