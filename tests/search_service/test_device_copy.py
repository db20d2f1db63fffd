"""A collection's GPU copy on a CPU: tombstones, rebuilds, lost copies, faiss's GPU limits.

The "GPU" is :class:`gpu_fakes.FakeGpu`: copies without ``remove_ids``, usable from the
device thread only, refusing k > 2048 and IVF copies with nprobe > 2048 as faiss does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from search_service import app as app_module
from search_service import device_copy, faiss_index
from search_service.collection import Collection, Limits
from search_service.device import GPU_MAX_K, CpuDevice
from search_service.errors import InvalidInput, Unavailable
from search_service.gpu_support import GpuUnavailable
from search_service.registry import Registry
from search_service.replica import Replica
from search_service.schema import MAX_K, CollectionSpec, IndexKind
from search_service.settings import SearchSettings
from search_service.vectors import encode_vectors
from tests.search_service.conftest import (
    CollectionOpener,
    app_client,
    assert_same_topk,
    brute_force,
    unit_vectors,
)
from tests.search_service.gpu_fakes import FakeGpu

pytestmark = pytest.mark.unit

DIM = 16


@pytest.fixture
def gpu() -> Iterator[FakeGpu]:
    fake = FakeGpu()
    yield fake
    fake.device.close()


@pytest.fixture
def quick_heal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_copy, "HEAL_DELAYS_S", (0.02,))


def hit_ids(hits: list[list[tuple[int, float]]]) -> set[int]:
    return {i for row in hits for i, _ in row}


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


@pytest.mark.parametrize("kind", ["flat", "ivf"])
async def test_replica_tombstones_then_rebuilds(
    tmp_path: Path, gpu: FakeGpu, open_collection: CollectionOpener, kind: IndexKind
) -> None:
    rng = np.random.default_rng(7)
    gallery = unit_vectors(rng, 1000, DIM)
    ids = np.arange(1000, dtype=np.int64)
    spec = CollectionSpec(dim=DIM, index=kind, nlist=8, nprobe=8)
    collection = open_collection(tmp_path / kind, spec, device=gpu.device, limits=Limits(max_tombstones=30))
    assert collection.info().device == "gpu:0" and len(gpu.copies) == 1
    await collection.add(ids[:200], gallery[:200])
    await collection.add(ids[200:], gallery[200:])  # ivf: trained here, copy rebuilt
    assert len(gpu.copies) == (2 if kind == "ivf" else 1)
    copies = len(gpu.copies)

    await collection.delete(ids[:20])
    assert collection._copy is not None
    replica = collection._copy.replica
    assert replica.tombstones == 20 and len(gpu.copies) == copies
    got = await collection.search(gallery[:40], 10)
    assert not hit_ids(got) & set(range(20))
    if kind == "flat":
        want_ids, want_scores = brute_force(gallery[20:], ids[20:], gallery[:40], 10)
        assert_same_topk(
            [[i for i, _ in r] for r in got], [[s for _, s in r] for r in got], want_ids, want_scores
        )

    await collection.delete(ids[20:40])  # 40 would pass 30 tombstones: rebuilt instead
    assert replica.tombstones == 0 and len(gpu.copies) == copies + 1
    got = await collection.search(gallery[:40], 10)
    assert not hit_ids(got) & set(range(40))

    await collection.delete(ids[40:41])
    fresh = unit_vectors(rng, 1, DIM)
    await collection.add(ids[40:41], fresh)  # re-adding a tombstoned id forces a rebuild
    assert replica.tombstones == 0 and len(gpu.copies) == copies + 2
    assert (await collection.search(fresh, 1))[0][0][0] == 40
    assert collection.info().count == 960


async def test_hnsw_stays_on_cpu(tmp_path: Path, gpu: FakeGpu, open_collection: CollectionOpener) -> None:
    spec = CollectionSpec(dim=DIM, index="hnsw")
    collection = open_collection(tmp_path / "h", spec, device=gpu.device)
    assert collection.info().device == "cpu" and gpu.copies == []


async def test_searches_never_ask_the_gpu_for_more_than_its_limit(
    tmp_path: Path, gpu: FakeGpu, open_collection: CollectionOpener
) -> None:
    # A tombstone limit far above what a GPU copy may hold: the copy's own bound applies.
    limits = Limits(max_tombstones=100_000)
    collection = open_collection(tmp_path / "t", CollectionSpec(dim=DIM), device=gpu.device, limits=limits)
    assert collection._copy is not None and collection._copy.max_tombstones == GPU_MAX_K - MAX_K
    rng = np.random.default_rng(11)
    gallery = unit_vectors(rng, 3000, DIM)
    await collection.add(np.arange(3000), gallery)
    for start in range(0, 1400, 100):
        await collection.delete(np.arange(start, start + 100))
        got = await collection.search(gallery[:2], MAX_K)
        assert len(got[0]) == MAX_K and not hit_ids(got) & set(range(start + 100))
    # Rebuilt once, when 1100 tombstones would have passed 1024: 1000 was the most ever held.
    asked = [k for copy in gpu.copies for k in copy.asked]
    assert len(gpu.copies) == 2 and max(asked) == MAX_K + 1000 <= GPU_MAX_K


async def test_a_search_past_the_gpu_limit_is_a_problem_not_a_faiss_error(gpu: FakeGpu) -> None:
    # Collections rebuild before it can happen; a replica left with too many tombstones refuses.
    index = faiss_index.new_index(CollectionSpec(dim=DIM))
    gallery = unit_vectors(np.random.default_rng(14), 1200, DIM)
    index.add_with_ids(gallery, np.arange(1200))
    replica = Replica.of(gpu.device, lambda copy: copy(index))
    replica.tombstone(np.arange(1100))
    with pytest.raises(Unavailable, match="1100 deleted vectors await a rebuild") as refused:
        await replica.search(gallery[:1], MAX_K)
    assert refused.value.status == 503 and gpu.copies[0].asked == []
    assert len((await replica.search(gallery[:1], 900))[0]) == 100


async def test_a_failed_rebuild_after_an_add_is_surfaced_then_healed(
    tmp_path: Path,
    gpu: FakeGpu,
    open_collection: CollectionOpener,
    quick_heal: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "search_service.device_copy")
    rng = np.random.default_rng(8)
    gallery = unit_vectors(rng, 100, DIM)
    collection = open_collection(tmp_path / "f", CollectionSpec(dim=DIM), device=gpu.device)
    await collection.add(np.arange(50), gallery[:50])
    await collection.delete(np.arange(1))

    gpu.broken = True
    assert await collection.add(np.arange(1), gallery[:1]) == 1  # a tombstoned id: needs a new copy
    # The add stands (log and primary); the collection is not moved to the CPU.
    assert collection.info().count == 50 and collection.info().device == "gpu:0"
    assert collection.device_copy_lost
    assert "its copy on gpu:0 could not be rebuilt; searches answer 503" in caplog.text
    with pytest.raises(Unavailable) as refused:
        await collection.search(gallery[:1], 1)
    assert refused.value.slug == "device-copy-lost" and "out of memory" in refused.value.detail

    await collection.add(np.arange(50, 60), gallery[50:60])  # writes go on while it is lost
    gpu.broken = False
    await until(lambda: not collection.device_copy_lost)
    hits = await collection.search(gallery[[0, 55]], 1)
    assert [row[0][0] for row in hits] == [0, 55]
    assert "its copy on gpu:0 is back" in caplog.text


async def test_a_failed_rebuild_after_a_delete_is_not_swallowed(
    tmp_path: Path, gpu: FakeGpu, open_collection: CollectionOpener
) -> None:
    rng = np.random.default_rng(9)
    gallery = unit_vectors(rng, 100, DIM)
    collection = open_collection(
        tmp_path / "d", CollectionSpec(dim=DIM), device=gpu.device, limits=Limits(max_tombstones=10)
    )
    await collection.add(np.arange(100), gallery)
    gpu.broken = True
    assert await collection.delete(np.arange(20)) == 20  # past 10 tombstones: a new copy, which fails
    assert collection._copy is not None and collection._copy.replica.tombstones == 0
    with pytest.raises(Unavailable, match="could not be rebuilt"):
        await collection.search(gallery[:1], 1)


async def test_with_gpu_or_cpu_a_lost_copy_searches_the_primary(
    tmp_path: Path, open_collection: CollectionOpener
) -> None:
    gpu = FakeGpu(search_primary_when_lost=True)
    rng = np.random.default_rng(10)
    gallery = unit_vectors(rng, 100, DIM)
    collection = open_collection(
        tmp_path / "p", CollectionSpec(dim=DIM), device=gpu.device, limits=Limits(max_tombstones=5)
    )
    try:
        await collection.add(np.arange(100), gallery)
        gpu.broken = True
        await collection.delete(np.arange(10))
        assert collection.device_copy_lost and collection.info().device == "cpu"
        got = await collection.search(gallery[:5], 3)
        want_ids, want_scores = brute_force(gallery[10:], np.arange(10, 100), gallery[:5], 3)
        assert_same_topk(
            [[i for i, _ in r] for r in got], [[s for _, s in r] for r in got], want_ids, want_scores
        )
    finally:
        await collection.close(snapshot=False)  # frees its copy on the device thread
        gpu.device.close()


@pytest.fixture
async def registry(tmp_path: Path, gpu: FakeGpu, pool: ThreadPoolExecutor) -> AsyncIterator[Registry]:
    opened = Registry(tmp_path, gpu.device, pool, Limits())
    await opened.open_all()
    yield opened
    await opened.close()


async def test_a_gpu_shard_refuses_nprobe_beyond_faiss_gpu_limit(registry: Registry) -> None:
    with pytest.raises(InvalidInput) as refused:
        await registry.create("big", CollectionSpec(dim=DIM, index="ivf", nprobe=GPU_MAX_K + 1))
    assert refused.value.status == 422 and refused.value.slug == "beyond-device-limits"
    assert "nprobe 2049 is above 2048" in refused.value.detail and len(registry) == 0
    assert await registry.create("edge", CollectionSpec(dim=DIM, index="ivf", nprobe=GPU_MAX_K))


async def test_a_cpu_shard_still_takes_a_large_nprobe(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    registry = Registry(tmp_path, CpuDevice(), pool, Limits())
    await registry.open_all()
    try:
        assert await registry.create("big", CollectionSpec(dim=DIM, index="ivf", nprobe=4096))
    finally:
        await registry.close()


async def test_a_collection_beyond_the_gpu_limits_opens_on_the_cpu(
    tmp_path: Path, gpu: FakeGpu, pool: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    # Made and trained on a CPU shard, then its data dir given to a GPU shard: faiss would
    # refuse to copy it (the fake does too), which stopped the shard from starting.
    spec = CollectionSpec(dim=DIM, index="ivf", nlist=4, nprobe=4096)
    directory = tmp_path / "collections" / "big"
    gallery = unit_vectors(np.random.default_rng(12), 300, DIM)
    registry = Registry(tmp_path, CpuDevice(), pool, Limits())
    await registry.open_all()
    await registry.create("big", spec)
    await registry.get("big").add(np.arange(300), gallery)
    await registry.close()

    collection = await asyncio.to_thread(Collection, "big", directory, gpu.device, pool, Limits())
    try:
        assert collection.info().device == "cpu" and gpu.copies == []
        assert (await collection.search(gallery[:1], 1))[0][0][0] == 0
        assert "collection big stays on the CPU: nprobe 4096 is above 2048" in caplog.text
    finally:
        await collection.close(snapshot=False)


@pytest.fixture
async def gpu_client(
    tmp_path: Path, gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setattr(app_module, "make_device", lambda choice, temp_memory_bytes: gpu.device)
    async with app_client(SearchSettings(data_dir=tmp_path, search_threads=2)) as client:
        yield client


async def test_gpu_limits_and_lost_copies_are_problems_over_http(
    gpu_client: httpx.AsyncClient, gpu: FakeGpu
) -> None:
    refused = await gpu_client.put("/collections/g", json={"dim": DIM, "index": "ivf", "nprobe": 4096})
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:facerec:search:problem:beyond-device-limits"

    assert (await gpu_client.put("/collections/g", json={"dim": DIM})).status_code == 201
    gallery = unit_vectors(np.random.default_rng(13), 20, DIM)
    body = {"ids": list(range(20)), "vectors": encode_vectors(gallery)}
    assert (await gpu_client.post("/collections/g/vectors", json=body)).status_code == 200
    search = {"vectors": encode_vectors(gallery[:1]), "k": MAX_K}
    assert (await gpu_client.post("/collections/g/search", json=search)).status_code == 200

    deleted = await gpu_client.request("DELETE", "/collections/g/vectors", json={"ids": [0]})
    assert deleted.json() == {"deleted": 1}
    gpu.broken = True
    readd = await gpu_client.post(
        "/collections/g/vectors", json={"ids": [0], "vectors": encode_vectors(gallery[:1])}
    )
    assert readd.json() == {"added": 1}  # a tombstoned id back: the copy is rebuilt, and that fails
    lost = await gpu_client.post("/collections/g/search", json=search)
    assert lost.status_code == 503 and lost.json()["type"].endswith("device-copy-lost")
    metrics = (await gpu_client.get("/metrics")).text
    assert 'facerec_search_device_copy_lost{collection="g"} 1.0' in metrics
    assert 'facerec_search_device_info{device="gpu:0"} 1.0' in metrics
    assert (await gpu_client.get("/health")).json()["device"] == "gpu:0"


async def test_a_shard_asked_for_a_gpu_it_cannot_use_does_not_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(GpuUnavailable, match="has no GPU support"):
        async with app_client(SearchSettings(data_dir=tmp_path, device="gpu")):
            pass
    assert "search service cannot start on device gpu" in caplog.text


async def test_health_and_metrics_say_cpu_on_the_cpu(tmp_path: Path) -> None:
    async with app_client(SearchSettings(data_dir=tmp_path, device="gpu-or-cpu")) as client:
        assert (await client.get("/health")).json()["device"] == "cpu"
        assert 'facerec_search_device_info{device="cpu"} 1.0' in (await client.get("/metrics")).text
