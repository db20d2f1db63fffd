"""Device selection and the GPU replica path (tombstones, rebuild aside, swap) on CPU.

The "GPU" here is a :class:`ReplicaDevice` whose copies behave like FAISS GPU indexes
in the ways that matter: no ``remove_ids`` and usable from one thread only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
import pytest

from search_service import device as device_module
from search_service.collection import Limits
from search_service.device import CpuDevice, ReplicaDevice, choose_device, make_device
from search_service.schema import CollectionSpec, IndexKind
from tests.search_service.conftest import (
    CollectionOpener,
    assert_same_topk,
    brute_force,
    unit_vectors,
)

pytestmark = pytest.mark.unit

DIM = 16


@pytest.mark.parametrize(
    ("setting", "gpus", "chosen"),
    [
        ("auto", 0, "cpu"),
        ("auto", 2, "gpu:0"),
        ("cpu", 2, "cpu"),
        ("gpu", 1, "gpu:0"),
        ("GPU:1", 2, "gpu:1"),
    ],
)
def test_choose_device(setting: str, gpus: int, chosen: str) -> None:
    assert choose_device(setting, gpus) == chosen


@pytest.mark.parametrize(("setting", "gpus"), [("gpu", 0), ("gpu:2", 2), ("tpu", 1), ("gpu:x", 1)])
def test_choose_device_refuses(setting: str, gpus: int) -> None:
    with pytest.raises(ValueError):
        choose_device(setting, gpus)


def test_make_device_uses_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_device("auto"), CpuDevice)  # faiss-cpu: no GPU
    made: list[int] = []

    def fake_gpu_device(number: int) -> ReplicaDevice:
        made.append(number)
        return ReplicaDevice(f"gpu:{number}", faiss.clone_index)

    monkeypatch.setattr(device_module.faiss, "get_num_gpus", lambda: 2, raising=False)
    monkeypatch.setattr(device_module, "gpu_device", fake_gpu_device)
    device = make_device("auto")
    assert isinstance(device, ReplicaDevice) and device.name == "gpu:0" and made == [0]
    device.close()
    assert make_device("gpu:1").name == "gpu:1"


class FakeGpuIndex:
    """A CPU copy that, like a GPU index, has no remove_ids and refuses other threads."""

    def __init__(self, index: faiss.Index) -> None:
        self._index = faiss.clone_index(index)

    def _check_thread(self) -> None:
        assert threading.current_thread().name.startswith("search-device")

    @property
    def ntotal(self) -> int:
        self._check_thread()
        return int(self._index.ntotal)

    def search(self, x: npt.NDArray[np.float32], k: int) -> tuple[npt.NDArray, npt.NDArray]:
        self._check_thread()
        return self._index.search(x, k)

    def add_with_ids(self, x: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
        self._check_thread()
        self._index.add_with_ids(x, ids)

    def remove_ids(self, ids: object) -> None:
        raise RuntimeError("GPU indexes have no remove_ids")


class FakeGpu:
    def __init__(self) -> None:
        self.copies = 0
        self.device = ReplicaDevice("gpu:0", self.copy)

    def copy(self, index: faiss.Index) -> faiss.Index:
        self.copies += 1
        return FakeGpuIndex(index)  # type: ignore[return-value]


@pytest.fixture
def gpu() -> Iterator[FakeGpu]:
    fake = FakeGpu()
    yield fake
    fake.device.close()


@pytest.mark.parametrize("kind", ["flat", "ivf"])
async def test_replica_tombstones_then_rebuilds(
    tmp_path: Path, open_collection: CollectionOpener, gpu: FakeGpu, kind: IndexKind
) -> None:
    rng = np.random.default_rng(7)
    gallery = unit_vectors(rng, 1000, DIM)
    ids = np.arange(1000, dtype=np.int64)
    spec = CollectionSpec(dim=DIM, index=kind, nlist=8, nprobe=8)
    collection = open_collection(tmp_path / kind, spec, device=gpu.device, limits=Limits(max_tombstones=30))
    assert collection.info().device == "gpu:0" and gpu.copies == 1
    await collection.add(ids[:200], gallery[:200])
    await collection.add(ids[200:], gallery[200:])  # ivf: trained here, copy rebuilt
    assert gpu.copies == (2 if kind == "ivf" else 1)
    copies = gpu.copies

    await collection.delete(ids[:20])
    replica = collection._replica
    assert replica is not None and replica.tombstones == 20 and gpu.copies == copies
    got = await collection.search(gallery[:40], 10)
    assert not {i for row in got for i, _ in row} & set(range(20))
    if kind == "flat":
        want_ids, want_scores = brute_force(gallery[20:], ids[20:], gallery[:40], 10)
        assert_same_topk(
            [[i for i, _ in r] for r in got], [[s for _, s in r] for r in got], want_ids, want_scores
        )

    await collection.delete(ids[20:40])  # 40 > 30 tombstones: rebuilt aside, swapped
    assert replica.tombstones == 0 and gpu.copies == copies + 1
    got = await collection.search(gallery[:40], 10)
    assert not {i for row in got for i, _ in row} & set(range(40))

    await collection.delete(ids[40:41])
    fresh = unit_vectors(rng, 1, DIM)
    await collection.add(ids[40:41], fresh)  # re-adding a tombstoned id forces a rebuild
    assert replica.tombstones == 0 and gpu.copies == copies + 2
    assert (await collection.search(fresh, 1))[0][0][0] == 40
    assert collection.info().count == 960


async def test_hnsw_stays_on_cpu(tmp_path: Path, open_collection: CollectionOpener, gpu: FakeGpu) -> None:
    spec = CollectionSpec(dim=DIM, index="hnsw")
    collection = open_collection(tmp_path / "h", spec, device=gpu.device)
    assert collection.info().device == "cpu" and gpu.copies == 0


async def test_failed_device_copy_falls_back_to_cpu(
    tmp_path: Path, open_collection: CollectionOpener, gpu: FakeGpu
) -> None:
    rng = np.random.default_rng(8)
    gallery = unit_vectors(rng, 100, DIM)
    collection = open_collection(tmp_path / "f", CollectionSpec(dim=DIM), device=gpu.device)
    await collection.add(np.arange(50), gallery[:50])
    await collection.delete(np.arange(1))

    def broken(index: faiss.Index) -> faiss.Index:
        raise RuntimeError("out of GPU memory")

    gpu.device.copy = broken
    await collection.add(np.arange(1), gallery[:1])  # a tombstoned id: needs a new copy
    assert collection.info().device == "cpu" and collection.info().count == 50
    assert (await collection.search(gallery[:1], 1))[0][0][0] == 0
