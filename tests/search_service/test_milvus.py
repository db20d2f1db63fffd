"""The Milvus backend against real Milvus Lite: embedded in this process (a ``.db`` file) and
served by ``python -m orchestrator.runtime.milvus_lite`` as ``facerec up`` runs it.

Results are checked against brute force and against the FAISS service (in-process) fed the
same operations: the two backends must answer alike.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from orchestrator.clients.milvus import MilvusSearch
from orchestrator.clients.search import SearchServiceError, SearchUnavailable
from orchestrator.gallery.index_sync import ensure_collection, put_vectors
from search_service.checksum import checksum_of_ids
from search_service.schema import CollectionSpec, Hit
from tests.search_service.conftest import clustered_vectors, sharded_client, unit_vectors
from tests.support.processes import MilvusLiteProcess

pytestmark = pytest.mark.integration

DIM = 64
_names = itertools.count()


@pytest.fixture(scope="module")
async def lite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MilvusSearch]:
    search = MilvusSearch(str(tmp_path_factory.mktemp("milvus") / "milvus.db"), timeout=30)
    yield search
    await search.aclose()


@pytest.fixture
def name() -> str:
    """A fresh collection name, in the orchestrator's style (``-`` and ``.`` in it)."""
    return f"arcface-v1.g{next(_names)}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MilvusLiteProcess]:
    with MilvusLiteProcess(tmp_path / "served.db", log_dir=tmp_path) as proc:
        yield proc


def brute_force_ids(gallery: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    scores = queries @ gallery.T
    order = np.lexsort((np.broadcast_to(ids, scores.shape), -scores), axis=1)[:, :k]
    return [ids[row].tolist() for row in order]


async def test_flat_search_is_exact_against_brute_force(lite: MilvusSearch, name: str) -> None:
    rng = np.random.default_rng(1)
    vectors = clustered_vectors(rng, 3000, DIM, clusters=50)
    ids = rng.choice(10**9, 3000, replace=False).astype(np.int64)
    await lite.create_collection(name, CollectionSpec(dim=DIM))
    assert await lite.add(name, ids, vectors) == 3000
    queries = clustered_vectors(rng, 40, DIM, clusters=50)
    hits = await lite.search(name, queries, 10)
    assert [[h.id for h in row] for row in hits] == brute_force_ids(vectors, ids, queries, 10)
    expected = np.sort(queries @ vectors.T, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose([[h.score for h in row] for row in hits], expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
async def test_approximate_kinds_find_the_true_neighbours(lite: MilvusSearch, name: str, kind: str) -> None:
    rng = np.random.default_rng(2)
    vectors = clustered_vectors(rng, 4000, DIM, clusters=40)
    ids = np.arange(4000, dtype=np.int64) * 7
    await lite.create_collection(name, CollectionSpec(dim=DIM, index=kind, nlist=32, nprobe=8))
    await lite.add(name, ids, vectors)
    queries = vectors[rng.choice(4000, 50, replace=False)]
    hits = await lite.search(name, queries, 10)
    truth = brute_force_ids(vectors, ids, queries, 10)
    recall = np.mean([len({h.id for h in row} & set(t)) / 10 for row, t in zip(hits, truth, strict=True)])
    assert recall >= 0.9
    assert all(row[0].id == t[0] for row, t in zip(hits, truth, strict=True))  # each finds itself
    assert (await lite.info(name)).index == kind


async def test_the_same_answers_as_the_faiss_service(lite: MilvusSearch, name: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = unit_vectors(rng, 500, DIM) * 3.0  # not unit: both backends normalise
    ids = np.arange(500, dtype=np.int64) * 3 + 1
    queries = unit_vectors(rng, 20, DIM)
    spec = CollectionSpec(dim=DIM)
    async with sharded_client(tmp_path / "faiss", 1, token="t" * 32) as faiss:
        answers: list[list[list[Hit]]] = []
        infos = []
        for backend in (faiss, lite):
            await backend.create_collection(name, spec)
            await backend.add(name, ids, vectors)
            assert await backend.delete(name, [1, 4, 99999]) == 2
            answers.append(await backend.search(name, queries, 7))
            infos.append(await backend.info(name))
    assert [[h.id for h in row] for row in answers[0]] == [[h.id for h in row] for row in answers[1]]
    faiss_scores, milvus_scores = ([[h.score for h in row] for row in a] for a in answers)
    np.testing.assert_allclose(faiss_scores, milvus_scores, atol=1e-5)
    assert infos[0].checksum == infos[1].checksum == checksum_of_ids(ids[2:])
    assert infos[0].count == infos[1].count == 498


async def test_a_search_right_after_an_add_or_a_delete_sees_it(lite: MilvusSearch, name: str) -> None:
    """Strong consistency: an enrolled face is never answered "unknown", a deleted one never named."""
    rng = np.random.default_rng(4)
    await lite.create_collection(name, CollectionSpec(dim=DIM))
    await lite.add(name, np.arange(200), unit_vectors(rng, 200, DIM))
    for face_id in range(1000, 1040):
        probe = unit_vectors(rng, 1, DIM)
        await lite.add(name, [face_id], probe)
        assert (await lite.search(name, probe, 1))[0][0].id == face_id
        await lite.delete(name, [face_id])
        assert face_id not in [h.id for h in (await lite.search(name, probe, 5))[0]]


async def test_count_checksum_and_ids_follow_adds_and_deletes(lite: MilvusSearch, name: str) -> None:
    rng = np.random.default_rng(5)
    await lite.create_collection(name, CollectionSpec(dim=DIM, index="hnsw"))
    ids = rng.permutation(50_000)[:2500].astype(np.int64)
    await lite.add(name, ids, unit_vectors(rng, 2500, DIM))
    gone = ids[::5]
    assert await lite.delete(name, np.concatenate([gone, gone[:3], [10**12]])) == gone.size
    kept = np.setdiff1d(ids, gone)
    np.testing.assert_array_equal(await lite.ids(name, page=300), kept)  # ascending, over pages
    info = await lite.info(name)
    assert (info.count, info.checksum, info.dim) == (kept.size, checksum_of_ids(kept), DIM)
    assert info.memory_bytes == kept.size * (4 * DIM + 8 + 2 * 32 * 4)
    assert await lite.delete(name, gone) == 0


async def test_a_duplicate_add_is_refused_whole_and_put_vectors_skips_it(
    lite: MilvusSearch, name: str
) -> None:
    rng = np.random.default_rng(6)
    await lite.create_collection(name, CollectionSpec(dim=DIM))
    first = unit_vectors(rng, 3, DIM)
    await lite.add(name, [1, 2, 3], first)
    with pytest.raises(SearchServiceError) as clash:
        await lite.add(name, [3, 4], unit_vectors(rng, 2, DIM))
    assert clash.value.status == 409 and clash.value.problem["type"].endswith(":duplicate-ids")
    assert (await lite.info(name)).count == 3
    await put_vectors(lite, name, [2, 5], unit_vectors(rng, 2, DIM))
    np.testing.assert_array_equal(await lite.ids(name), [1, 2, 3, 5])
    assert (await lite.search(name, first[1:2], 1))[0][0].id == 2  # the first vector of 2 stayed
    with pytest.raises(SearchServiceError) as twice:
        await lite.add(name, [7, 7], unit_vectors(rng, 2, DIM))
    assert twice.value.status == 422


async def test_collections_are_created_once_dropped_and_missing_ones_are_404(
    lite: MilvusSearch, name: str
) -> None:
    spec = CollectionSpec(dim=DIM, index="ivf", nlist=16)
    first = await lite.create_collection(name, spec)
    assert (first.count, first.index, first.device) == (0, "ivf", "cpu")
    await lite.create_collection(name, spec)  # the same spec again: nothing to do
    with pytest.raises(SearchServiceError) as other:
        await lite.create_collection(name, spec.model_copy(update={"nlist": 8}))
    assert other.value.status == 409 and other.value.problem["type"].endswith(":collection-exists")
    await ensure_collection(lite, name, spec.model_copy(update={"index": "flat"}))  # kept, as with faiss
    with pytest.raises(SearchServiceError):
        await ensure_collection(lite, name, spec.model_copy(update={"dim": DIM + 1}))
    assert (await lite.health())[0].collections >= 1
    await lite.drop_collection(name)
    await lite.drop_collection(name, missing_ok=True)
    for call in (
        lite.drop_collection(name),
        lite.info(name),
        lite.ids(name),
        lite.search(name, np.ones((1, DIM)), 3),
        lite.add(name, [1], np.ones((1, DIM))),
        lite.delete(name, [1]),
    ):
        with pytest.raises(SearchServiceError) as missing:
            await call
        assert missing.value.status == 404 and missing.value.problem["type"].endswith(":unknown-collection")


async def test_bad_vectors_are_422(lite: MilvusSearch, name: str) -> None:
    await lite.create_collection(name, CollectionSpec(dim=DIM))
    bad = np.ones((2, DIM), np.float32)
    bad[1, 3] = np.nan
    for call in (
        lite.add(name, [1, 2], bad),
        lite.add(name, [1], np.zeros((1, DIM))),
        lite.add(name, [1], np.ones((1, DIM + 1))),
        lite.search(name, np.ones((1, DIM - 1)), 3),
        lite.search(name, np.ones((1, DIM)), 0),
    ):
        with pytest.raises(SearchServiceError) as invalid:
            await call
        assert invalid.value.status == 422
    assert await lite.search(name, np.empty((0, DIM)), 3) == []


async def test_an_unreachable_milvus_is_unavailable() -> None:
    search = MilvusSearch("http://127.0.0.1:9", timeout=2)
    with pytest.raises(SearchUnavailable) as down:
        await search.health()
    assert down.value.status == 503


async def test_a_lite_file_held_by_another_process_is_unavailable_and_says_why(
    server: MilvusLiteProcess,
) -> None:
    code = (
        "import asyncio; from orchestrator.clients.milvus import MilvusSearch\n"
        f"s = MilvusSearch({str(server.data_dir)!r}, timeout=5)\n"
        "try:\n    asyncio.run(s.health())\nexcept Exception as e:\n    print(e.status, e)\n"
    )
    answer = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert "503" in answer.stdout and "one process at a time" in answer.stdout, answer.stderr[-2000:]


async def test_the_served_file_wants_the_token_and_survives_a_kill(
    server: MilvusLiteProcess, name: str
) -> None:
    with pytest.raises(SearchServiceError) as refused:
        await MilvusSearch(server.url, token="not-the-token-" + "x" * 20, timeout=5).health()
    assert refused.value.status == 401
    search = MilvusSearch(server.url, token=server.token, timeout=5)
    rng = np.random.default_rng(7)
    vectors = unit_vectors(rng, 300, DIM)
    await search.create_collection(name, CollectionSpec(dim=DIM, index="hnsw"))
    await search.add(name, np.arange(300), vectors)
    before = await search.info(name)
    server.kill()
    # Calls while it is down, for long enough that gRPC's reconnect backoff grows past a second.
    down = asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - down < 4.0:
        with pytest.raises(SearchUnavailable):
            await search.search(name, vectors[:1], 1)
        await asyncio.sleep(0.2)
    server.start().wait_ready()
    # The first call once it listens is answered: no 503 while a stale backoff runs out. Milvus
    # Lite comes back with its indexed collections released: the client loads them.
    assert (await search.search(name, vectors[5:6], 1))[0][0].id == 5
    assert (await search.info(name)).checksum == before.checksum
    await search.aclose()
