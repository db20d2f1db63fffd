"""A collection in process: exactness, recall, deletes, snapshots and recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from search_service.checksum import checksum_of_ids
from search_service.collection import Limits
from search_service.errors import Conflict
from search_service.schema import CollectionSpec, IndexKind
from tests.search_service.conftest import (
    CollectionOpener,
    assert_same_topk,
    brute_force,
    clustered_vectors,
    unit_vectors,
)

pytestmark = pytest.mark.unit

DIM = 32
SPECS: dict[str, CollectionSpec] = {
    "flat": CollectionSpec(dim=DIM, index="flat"),
    # nlist 16 trains at 624 vectors, so the tests see the trained IVF.
    "ivf": CollectionSpec(dim=DIM, index="ivf", nlist=16, nprobe=16),
    "hnsw": CollectionSpec(dim=DIM, index="hnsw", hnsw_m=16, ef_search=128),
}


def _split(hits: list[list[tuple[int, float]]]) -> tuple[list[list[int]], list[list[float]]]:
    return [[i for i, _ in row] for row in hits], [[s for _, s in row] for row in hits]


async def test_flat_equals_brute_force(tmp_path: Path, open_collection: CollectionOpener) -> None:
    rng = np.random.default_rng(0)
    gallery = unit_vectors(rng, 3000, DIM)
    ids = rng.choice(10**9, 3000, replace=False).astype(np.int64)
    probes = unit_vectors(rng, 64, DIM)
    collection = open_collection(tmp_path / "g", SPECS["flat"])
    for chunk in range(3):
        rows = slice(chunk * 1000, (chunk + 1) * 1000)
        assert await collection.add(ids[rows], gallery[rows]) == 1000
    for k in (1, 10, 50):
        got_ids, got_scores = _split(await collection.search(probes, k))
        want_ids, want_scores = brute_force(gallery, ids, probes, k)
        assert_same_topk(got_ids, got_scores, want_ids, want_scores)
    assert collection.info().checksum == checksum_of_ids(ids)
    # k beyond the collection size returns everything, best first.
    small = open_collection(tmp_path / "s", SPECS["flat"])
    await small.add(ids[:5], gallery[:5])
    got_ids, got_scores = _split(await small.search(probes[:3], 10))
    assert_same_topk(got_ids, got_scores, *brute_force(gallery[:5], ids[:5], probes[:3], 5))


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
async def test_recall_against_flat(tmp_path: Path, open_collection: CollectionOpener, kind: str) -> None:
    rng = np.random.default_rng(1)
    gallery = clustered_vectors(rng, 6000, DIM, clusters=60)
    ids = np.arange(6000, dtype=np.int64)
    probes = clustered_vectors(rng, 200, DIM, clusters=60)
    spec = CollectionSpec(dim=DIM, index=kind, nlist=32, nprobe=6, ef_search=128)  # type: ignore[arg-type]
    approx = open_collection(tmp_path / kind, spec)
    for rows in np.array_split(np.arange(6000), 6):  # ivf trains part-way through
        await approx.add(ids[rows], gallery[rows])
    exact_ids, _ = brute_force(gallery, ids, probes, 10)
    got_ids, _ = _split(await approx.search(probes, 10))
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got_ids, exact_ids, strict=True)])
    print(f"\nrecall@10 of {kind} against flat: {recall:.3f}")
    assert recall >= (0.85 if kind == "ivf" else 0.9)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
async def test_deletes_take_effect_at_once(
    tmp_path: Path, open_collection: CollectionOpener, kind: IndexKind
) -> None:
    rng = np.random.default_rng(2)
    gallery = unit_vectors(rng, 1500, DIM)
    ids = np.arange(1500, dtype=np.int64) * 7
    collection = open_collection(tmp_path / kind, SPECS[kind])
    await collection.add(ids, gallery)
    doomed = ids[::5]
    assert await collection.delete(np.concatenate([doomed, [10**12]])) == doomed.size
    assert await collection.delete(doomed) == 0  # already gone
    kept = ~np.isin(ids, doomed)
    info = collection.info()
    assert info.count == kept.sum()
    assert info.checksum == checksum_of_ids(ids[kept])
    # The deleted vectors themselves are the hardest probes: each was its own top hit.
    got_ids, got_scores = _split(await collection.search(gallery[::5], 10))
    assert not set(doomed.tolist()) & {i for row in got_ids for i in row}
    assert all(len(row) == 10 for row in got_ids)
    if kind == "flat":
        assert_same_topk(got_ids, got_scores, *brute_force(gallery[kept], ids[kept], gallery[::5], 10))
    # A deleted id can come back with a new vector.
    fresh = unit_vectors(rng, 1, DIM)
    await collection.add(doomed[:1], fresh)
    got_ids, _ = _split(await collection.search(fresh, 1))
    assert got_ids == [[int(doomed[0])]]
    with pytest.raises(Conflict):
        await collection.add(ids[1:2], fresh)


def assert_same_hits(got: list[list[tuple[int, float]]], expected: list[list[tuple[int, float]]]) -> None:
    """Same neighbours in the same order; scores equal up to float rounding (faiss may sum
    the same products in another order, e.g. HNSW's batched distance code)."""
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in expected]
    np.testing.assert_allclose(
        [s for row in got for _, s in row], [s for row in expected for _, s in row], rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
async def test_recovery_from_snapshot_and_log(
    tmp_path: Path, open_collection: CollectionOpener, kind: IndexKind
) -> None:
    rng = np.random.default_rng(3)
    gallery = unit_vectors(rng, 1200, DIM)
    ids = np.arange(1200, dtype=np.int64)
    probes = unit_vectors(rng, 20, DIM)
    directory = tmp_path / kind
    first = open_collection(directory, SPECS[kind])
    await first.add(ids[:800], gallery[:800])
    await first.delete(ids[:50])
    await first.snapshot()  # hnsw: the tombstones go into the new log
    await first.add(ids[800:], gallery[800:])
    await first.delete(ids[800:850])
    before = first.info()
    expected = await first.search(probes, 10)
    # No snapshot at close: as after a crash, only the fsync'ed snapshot and log count.
    await first.close(snapshot=False)
    second = open_collection(directory, SPECS[kind])
    assert second.info() == before
    assert_same_hits(await second.search(probes, 10), expected)
    await second.close(snapshot=True)
    third = open_collection(directory, SPECS[kind])
    assert third.info() == before
    assert sorted(p.name for p in directory.iterdir() if p.suffix != ".json") == [
        "log-00000002.wal",
        "snapshot-00000002.faiss",
    ]


async def test_snapshot_every_n_records(tmp_path: Path, open_collection: CollectionOpener) -> None:
    rng = np.random.default_rng(4)
    collection = open_collection(tmp_path / "c", SPECS["flat"], limits=Limits(snapshot_every_records=3))
    for i in range(4):
        await collection.add(np.array([i]), unit_vectors(rng, 1, DIM))
    assert collection._snapshot_task is not None
    await collection._snapshot_task
    assert (tmp_path / "c" / "snapshot-00000001.faiss").exists()
    assert not (tmp_path / "c" / "log-00000000.wal").exists()


async def test_hnsw_compacts_beyond_max_tombstones(tmp_path: Path, open_collection: CollectionOpener) -> None:
    rng = np.random.default_rng(5)
    gallery = unit_vectors(rng, 300, DIM)
    collection = open_collection(tmp_path / "h", SPECS["hnsw"], limits=Limits(max_tombstones=10))
    await collection.add(np.arange(300), gallery)
    await collection.delete(np.arange(5))
    assert len(collection.state.tombstones) == 5
    await collection.delete(np.arange(5, 20))
    assert not collection.state.tombstones and collection.state.index.ntotal == 280
    got_ids, _ = _split(await collection.search(gallery[:20], 5))
    assert min(i for row in got_ids for i in row) >= 20


async def test_concurrent_searches_and_writes(tmp_path: Path, open_collection: CollectionOpener) -> None:
    rng = np.random.default_rng(6)
    gallery = unit_vectors(rng, 2000, DIM)
    collection = open_collection(tmp_path / "c", SPECS["flat"])
    await collection.add(np.arange(1000), gallery[:1000])
    writes = [collection.add(np.arange(i, i + 100), gallery[i : i + 100]) for i in range(1000, 2000, 100)]
    searches = [collection.search(gallery[:8], 5) for _ in range(30)]
    results = await asyncio.gather(*writes, *searches)
    assert sum(results[:10]) == 1000  # type: ignore[arg-type]
    assert collection.info().count == 2000
    got_ids, _ = _split(await collection.search(gallery[1990:], 1))
    assert got_ids == [[i] for i in range(1990, 2000)]


async def test_crash_between_new_log_and_snapshot_rename(
    tmp_path: Path, open_collection: CollectionOpener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot interrupted after starting its log, then a failed snapshot later."""
    rng = np.random.default_rng(9)
    gallery = unit_vectors(rng, 30, DIM)
    directory = tmp_path / "c"
    first = open_collection(directory, SPECS["flat"])
    await first.add(np.arange(10), gallery[:10])
    await first.close(snapshot=False)
    # What a crash leaves after the new segment is created but before the rename.
    (directory / "log-00000001.wal").touch()
    second = open_collection(directory, SPECS["flat"])
    await second.add(np.arange(10, 20), gallery[10:20])  # lands in log-00000001
    with monkeypatch.context() as patch:
        patch.setattr(second.files, "write_snapshot", _fail)
        with pytest.raises(OSError):
            await second.snapshot()
    await second.close(snapshot=False)
    third = open_collection(directory, SPECS["flat"])
    assert third.info().checksum == checksum_of_ids(np.arange(20))
    await third.snapshot()
    assert sorted(p.name for p in directory.iterdir()) == [
        "collection.json",
        "log-00000002.wal",
        "snapshot-00000002.faiss",
    ]


def _fail(*args: object) -> None:
    raise OSError("disk full")
