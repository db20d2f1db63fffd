"""Where searches run: in place on the CPU index, or on a device copy (GPU).

* :class:`CpuDevice` searches the primary CPU index from many threads at once.
* :class:`ReplicaDevice` keeps a copy of the primary made by ``copy`` and runs every
  call on it through one worker thread, because FAISS GPU indexes are not thread-safe.
  :func:`gpu_device` builds one for ``gpu:N``; tests build one with
  ``faiss.clone_index`` as ``copy`` to run the same path on CPU.

:func:`choose_device` is the pure selection rule, tested without a GPU.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import faiss

from search_service.faiss_index import CopyIndex

logger = logging.getLogger(__name__)


def choose_device(setting: str, num_gpus: int) -> str:
    """``"cpu"`` or ``"gpu:N"`` from the ``device`` setting and the visible GPU count.

    ``auto`` takes GPU 0 when there is one; ``gpu`` means ``gpu:0``; asking for a GPU
    that is not visible is an error rather than a silent fall back to CPU.
    """
    value = setting.strip().lower()
    if value == "cpu":
        return "cpu"
    if value == "auto":
        return "gpu:0" if num_gpus > 0 else "cpu"
    if value == "gpu":
        value = "gpu:0"
    kind, _, number = value.partition(":")
    if kind != "gpu" or not number.isdigit():
        raise ValueError(f"device must be auto, cpu, gpu or gpu:N, not {setting!r}")
    if int(number) >= num_gpus:
        raise ValueError(f"device {value} requested but {num_gpus} GPU(s) are visible")
    return value


def visible_gpus() -> int:
    """GPUs usable by the installed faiss (0 for faiss-cpu)."""
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
    replicated: bool = False


@dataclass
class ReplicaDevice:
    """A device holding copies of indexes; all calls go through ``worker`` (one thread)."""

    name: str
    copy: CopyIndex
    replicated: bool = True
    worker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="search-device")
    )

    def close(self) -> None:
        self.worker.shutdown(wait=True)


Device = CpuDevice | ReplicaDevice


def gpu_device(number: int) -> ReplicaDevice:
    def copy(index: faiss.Index) -> faiss.Index:
        # One resources object per copy: StandardGpuResources must not be shared by
        # two threads, and a rebuild copies on another thread while the old copy serves.
        resources = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(resources, number, index)
        gpu_index.referenced_objects = [resources]  # type: ignore[attr-defined]
        return gpu_index

    return ReplicaDevice(name=f"gpu:{number}", copy=copy)


def make_device(setting: str) -> Device:
    name = choose_device(setting, visible_gpus())
    if name == "cpu":
        return CpuDevice()
    return gpu_device(int(name.split(":")[1]))
