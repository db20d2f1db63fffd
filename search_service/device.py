"""Where searches run: in place on the CPU index, or on a device copy (GPU).

* :class:`CpuDevice` searches the primary CPU index from many threads at once.
* :class:`ReplicaDevice` keeps copies of primaries, made by ``copy``, and runs every call on
  them, the copying included, through one worker thread: FAISS GPU indexes are not
  thread-safe, and one ``StandardGpuResources`` serves many indexes only from one thread
  (faiss wiki, "Threads and asynchronous calls"). :func:`gpu_device` builds one for GPU N
  with a single resources object for the process; tests build one with
  ``faiss.clone_index`` as ``copy`` to run the same path on CPU.

:func:`make_device` turns ``FACEREC_SEARCH_DEVICE`` (:class:`DeviceChoice`) into a device. A
GPU is checked with the driver (:mod:`gpu_support`) before faiss touches it, and used, or the
service refuses to start, unless the setting is ``gpu-or-cpu``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import faiss

from search_service.faiss_index import CopyIndex
from search_service.gpu_support import GpuUnavailable, installed_build, usable_gpu
from search_service.schema import CollectionSpec
from search_service.settings import DeviceChoice

logger = logging.getLogger(__name__)

GPU_MAX_K = 2048
"""faiss's GPU k-selection limit (``GPU_MAX_SELECTION_K``, faiss/gpu/utils/DeviceDefs.cuh): the
most hits one GPU search may ask for, and the most lists an IVF search may probe; beyond it
faiss refuses the search, or the copy of an IVF index (``validateNProbe``)."""


def faiss_has_gpu() -> bool:
    """Whether the installed faiss is a GPU build (faiss's own test of it)."""
    return "GPU" in faiss.get_compile_options()


def visible_gpus() -> int:
    """GPUs the installed faiss sees (0 for faiss-cpu). Not used to choose the device: a faiss
    GPU call on a GPU it cannot drive may abort the process; :func:`make_device` asks the driver."""
    get = getattr(faiss, "get_num_gpus", None)
    if get is None:
        return 0
    try:
        return int(get())
    except RuntimeError:  # a CUDA build without a usable driver
        logger.warning("faiss has GPU support but no GPU could be queried", exc_info=True)
        return 0


@dataclass
class CpuDevice:
    name: str = "cpu"
    fallback_reason: str | None = None
    """Why the GPU that ``gpu-or-cpu`` asked for is not used."""


@dataclass
class ReplicaDevice:
    """A device holding copies of indexes; all calls go through ``worker`` (one thread)."""

    name: str
    copy: CopyIndex
    """Makes the device copy of a CPU index; called on ``worker`` only."""
    max_k: int = GPU_MAX_K
    search_primary_when_lost: bool = False
    """Whether a collection whose copy could not be rebuilt searches its CPU primary meanwhile
    (``gpu-or-cpu``) rather than answering 503."""
    worker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="search-device")
    )

    def beyond_limits(self, spec: CollectionSpec) -> str | None:
        """Why a collection of ``spec`` cannot be searched here, or None."""
        if spec.index == "ivf" and spec.nprobe > self.max_k:
            return f"nprobe {spec.nprobe} is above {self.max_k}, the most lists faiss probes on {self.name}"
        return None

    def close(self) -> None:
        self.worker.shutdown(wait=True)


Device = CpuDevice | ReplicaDevice


def gpu_device(
    number: int, temp_memory_bytes: int, *, search_primary_when_lost: bool = False
) -> ReplicaDevice:
    """GPU ``number`` with one ``StandardGpuResources`` for every copy, made on the worker.

    faiss would otherwise reserve up to 1.5 GiB of scratch memory (and 256 MiB of pinned host
    memory) per resources object; ``temp_memory_bytes`` bounds the one reservation, and
    scratch needs beyond it go to ``cudaMalloc`` (StandardGpuResources.cpp, ``allocMemory``).
    """
    worker = ThreadPoolExecutor(1, thread_name_prefix="search-device")

    def make_resources() -> faiss.StandardGpuResources:
        resources = faiss.StandardGpuResources()
        resources.setTempMemory(temp_memory_bytes)
        return resources

    resources = worker.submit(make_resources).result()

    def copy(index: faiss.Index) -> faiss.Index:
        gpu_index = faiss.index_cpu_to_gpu(resources, number, index)
        # index_cpu_to_gpu does not keep its resources alive for the index it returns.
        gpu_index.referenced_objects = [resources]  # type: ignore[attr-defined]
        return gpu_index

    return ReplicaDevice(
        f"gpu:{number}", copy, search_primary_when_lost=search_primary_when_lost, worker=worker
    )


def make_device(choice: DeviceChoice, *, temp_memory_bytes: int) -> Device:
    """The device ``choice`` asks for; :class:`GpuUnavailable` when it asks for a GPU that
    cannot be used, unless it is ``gpu-or-cpu``."""
    if choice.kind == "cpu" or (choice.kind == "auto" and not faiss_has_gpu()):
        return CpuDevice()
    try:
        if not faiss_has_gpu():
            raise GpuUnavailable(
                "the faiss installed here has no GPU support (faiss-cpu): use the GPU search image "
                "(--build-arg FAISS=gpu) or set FACEREC_SEARCH_DEVICE=cpu"
            )
        gpu = usable_gpu(choice.gpu, installed_build())
    except GpuUnavailable as error:
        if not choice.may_fall_back:
            raise
        logger.warning("searching on the CPU, as FACEREC_SEARCH_DEVICE=gpu-or-cpu allows: %s", error)
        return CpuDevice(fallback_reason=str(error))
    logger.info("searching on %s, driver for CUDA %d.%d", gpu, *gpu.driver_cuda)
    return gpu_device(choice.gpu, temp_memory_bytes, search_primary_when_lost=choice.may_fall_back)
