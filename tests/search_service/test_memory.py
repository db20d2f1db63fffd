"""A collection's ``memory_bytes``: the index's arrays, close to what faiss itself writes out."""

from __future__ import annotations

import secrets
from pathlib import Path

import faiss
import numpy as np
import pytest

from search_service import faiss_index
from search_service.collection import Limits
from search_service.schema import CollectionSpec, IndexKind
from tests.search_service.conftest import CollectionOpener, sharded_client, unit_vectors

pytestmark = pytest.mark.unit

DIM = 32
N = 2000
SPECS: dict[str, CollectionSpec] = {
    "flat": CollectionSpec(dim=DIM, index="flat"),
    "ivf": CollectionSpec(dim=DIM, index="ivf", nlist=16),  # trains at 624 vectors
    "hnsw": CollectionSpec(dim=DIM, index="hnsw", hnsw_m=16),
}


def serialised_bytes(index: faiss.Index) -> int:
    return int(faiss.serialize_index(index).nbytes)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
async def test_memory_is_the_serialised_index_plus_the_id_map(
    tmp_path: Path, open_collection: CollectionOpener, kind: IndexKind
) -> None:
    collection = open_collection(tmp_path / kind, SPECS[kind])
    assert collection.info().memory_bytes == faiss_index.memory_bytes(collection.state.index) < 1024
    rng = np.random.default_rng(3)
    await collection.add(np.arange(N, dtype=np.int64), unit_vectors(rng, N, DIM))
    index = collection.state.index
    assert faiss_index.is_ivf(index) == (kind == "ivf")
    id_map = 0 if kind == "ivf" else N * faiss_index.ID_MAP_ENTRY_BYTES
    memory = collection.info().memory_bytes
    assert memory is not None
    assert memory - id_map == pytest.approx(serialised_bytes(index), rel=0.01)
    assert memory > N * DIM * 4


async def test_emptying_an_hnsw_collection_frees_its_graph_without_copying_it(
    tmp_path: Path, open_collection: CollectionOpener, monkeypatch: pytest.MonkeyPatch
) -> None:
    collection = open_collection(tmp_path / "h", SPECS["hnsw"], limits=Limits(max_tombstones=10))
    ids = np.arange(N, dtype=np.int64)
    await collection.add(ids, unit_vectors(np.random.default_rng(4), N, DIM))

    def copy_out(*args: object) -> None:
        raise AssertionError("the vectors of a cleared index were copied out")

    monkeypatch.setattr(faiss_index, "rebuild_without", copy_out)
    assert await collection.delete(ids) == N
    assert collection.state.index.ntotal == 0 and not collection.state.tombstones
    assert collection.info().count == 0 and (collection.info().memory_bytes or 0) < 1024
    # Still a working hnsw collection.
    fresh = unit_vectors(np.random.default_rng(5), 3, DIM)
    await collection.add(ids[:3], fresh)
    assert faiss_index.is_hnsw(collection.state.index)
    assert [row[0][0] for row in await collection.search(fresh, 1)] == [0, 1, 2]


async def test_the_client_sums_memory_over_shards(tmp_path: Path) -> None:
    async with sharded_client(tmp_path, 2, token=secrets.token_urlsafe(32)) as client:
        await client.create_collection("faces", CollectionSpec(dim=DIM))
        await client.add("faces", np.arange(100), unit_vectors(np.random.default_rng(6), 100, DIM))
        info = await client.info("faces")
        assert info.memory_bytes == 100 * (DIM * 4 + 8 + faiss_index.ID_MAP_ENTRY_BYTES)
