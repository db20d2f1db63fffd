"""Stand-ins for a GPU, its driver and faiss's GPU functions, to run the GPU path on a CPU.

:class:`FakeGpuIndex` behaves like a FAISS GPU index in the ways that matter here: no
``remove_ids``, usable from the device worker thread only, and faiss's refusals of
k > 2048 (``validateKSelect``) and of an IVF with nprobe > 2048 (``validateNProbe``, at copy).
:class:`FakeGpuFaiss` replaces ``StandardGpuResources`` and ``index_cpu_to_gpu``, counting
resources objects and recording the thread of every call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import faiss
import numpy as np
import numpy.typing as npt
import pytest

from search_service import device as device_module
from search_service import faiss_index, gpu_support
from search_service.cuda_driver import CudaError
from search_service.device import GPU_MAX_K, ReplicaDevice

WORKER_PREFIX = "search-device"


def on_worker() -> bool:
    return threading.current_thread().name.startswith(WORKER_PREFIX)


class FakeGpuIndex:
    """A CPU copy that, like a GPU index, has no remove_ids and refuses other threads."""

    def __init__(self, index: faiss.Index) -> None:
        if faiss_index.is_ivf(index) and index.nprobe > GPU_MAX_K:
            raise RuntimeError(f"GPU IVF index only supports nprobe selection up to {GPU_MAX_K}")
        self._index = faiss.clone_index(index)
        self.asked: list[int] = []

    def _check_thread(self) -> None:
        assert on_worker(), threading.current_thread().name

    @property
    def ntotal(self) -> int:
        self._check_thread()
        return int(self._index.ntotal)

    def search(self, x: npt.NDArray[np.float32], k: int) -> tuple[npt.NDArray, npt.NDArray]:
        self._check_thread()
        if k > GPU_MAX_K:
            raise RuntimeError(
                f"GPU index only supports min/max-K selection up to {GPU_MAX_K} (requested {k})"
            )
        self.asked.append(k)
        return self._index.search(x, k)

    def add_with_ids(self, x: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
        self._check_thread()
        self._index.add_with_ids(x, ids)

    def remove_ids(self, ids: object) -> None:
        raise RuntimeError("GPU indexes have no remove_ids")


class FakeGpu:
    """A :class:`ReplicaDevice` with fake copies; ``broken`` makes every copy fail."""

    def __init__(self, *, search_primary_when_lost: bool = False) -> None:
        self.copies: list[FakeGpuIndex] = []
        self.broken = False
        self.device = ReplicaDevice("gpu:0", self.copy, search_primary_when_lost=search_primary_when_lost)

    def copy(self, index: faiss.Index) -> faiss.Index:
        assert on_worker()
        if self.broken:
            raise RuntimeError("StandardGpuResources: alloc fail (cudaMalloc error out of memory [2])")
        made = FakeGpuIndex(index)
        self.copies.append(made)
        return made  # type: ignore[return-value]


class FakeResources:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.temp_memory: int | None = None
        calls.append("StandardGpuResources")
        assert on_worker(), "made off the device thread"

    def setTempMemory(self, size: int) -> None:
        self.temp_memory = size


@dataclass
class FakeGpuFaiss:
    """Installs fakes of faiss's GPU functions; ``calls`` lists what faiss was asked, in order."""

    calls: list[str] = field(default_factory=list)
    resources: list[FakeResources] = field(default_factory=list)
    used_with: list[object] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(device_module, "faiss_has_gpu", lambda: True)
        monkeypatch.setattr(faiss, "StandardGpuResources", self.make_resources, raising=False)
        monkeypatch.setattr(faiss, "index_cpu_to_gpu", self.index_cpu_to_gpu, raising=False)

    def make_resources(self) -> FakeResources:
        made = FakeResources(self.calls)
        self.resources.append(made)
        return made

    def index_cpu_to_gpu(self, resources: FakeResources, device: int, index: faiss.Index) -> FakeGpuIndex:
        self.calls.append(f"index_cpu_to_gpu:{device}")
        assert on_worker(), "copied off the device thread"
        self.used_with.append(resources)
        return FakeGpuIndex(index)


@dataclass
class FakeDriver:
    """What ``libcuda`` would answer; ``fail`` makes every call raise that CUDA error."""

    gpus: list[tuple[str, tuple[int, int]]] = field(
        default_factory=lambda: [("NVIDIA H100 80GB HBM3", (9, 0))]
    )
    cuda: tuple[int, int] = (12, 8)
    fail: int | None = None

    def _check(self, call: str) -> None:
        if self.fail is not None:
            raise CudaError(call, self.fail, "CUDA_ERROR_UNKNOWN")

    def cuda_version(self) -> tuple[int, int]:
        self._check("cuDriverGetVersion")
        return self.cuda

    def device_count(self) -> int:
        self._check("cuDeviceGetCount")
        return len(self.gpus)

    def name(self, ordinal: int) -> str:
        return self.gpus[ordinal][0]

    def compute_capability(self, ordinal: int) -> tuple[int, int]:
        return self.gpus[ordinal][1]


def install_driver(monkeypatch: pytest.MonkeyPatch, driver: FakeDriver | Exception) -> None:
    """Make :func:`gpu_support.open_driver` give ``driver``, or raise it."""

    def open_driver() -> FakeDriver:
        if isinstance(driver, Exception):
            raise driver
        return driver

    monkeypatch.setattr(gpu_support, "open_driver", open_driver)


def install_build(monkeypatch: pytest.MonkeyPatch, build: gpu_support.FaissGpuBuild | None) -> None:
    monkeypatch.setattr(device_module, "installed_build", lambda: build)


def known_build(distribution: str) -> gpu_support.FaissGpuBuild:
    return next(b for b in gpu_support.KNOWN_BUILDS if b.distribution == distribution)


FAISS_GPU = known_build("faiss-gpu")
FAISS_GPU_CU12 = known_build("faiss-gpu-cu12")
