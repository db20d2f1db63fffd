"""Whether the installed faiss GPU build can run on a GPU, checked before faiss touches it.

A faiss GPU wheel carries machine code for some compute capabilities and perhaps PTX, which
the driver compiles for newer GPUs at first use. Machine code for X.y runs on X.z with
z >= y; PTX for X.y runs on any capability from X.y up, compiled by a driver at least as new
as the toolkit that wrote it (CUDA programming guide, binary and PTX compatibility). On a GPU
the build has no code for, faiss's first kernel fails with "no kernel image is available for
execution on the device" and faiss aborts the process: a shard restarted by compose would
crash again at its first search, forever. So the driver is asked first (:mod:`cuda_driver`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import metadata

from search_service.cuda_driver import CudaError, Driver, open_driver

logger = logging.getLogger(__name__)

Capability = tuple[int, int]
# The oldest driver branch of each CUDA major version (minor version compatibility).
_OLDEST_DRIVER = {12: "R525", 13: "R580"}


class GpuUnavailable(RuntimeError):
    """The GPU asked for cannot run the installed faiss; the message says why and what to do."""


def _dotted(version: Capability) -> str:
    return f"{version[0]}.{version[1]}"


@dataclass(frozen=True)
class FaissGpuBuild:
    """The CUDA code inside one faiss GPU wheel, as listed from its fatbinary."""

    distribution: str
    version: str
    cuda: Capability
    """The CUDA toolkit it was built with."""
    machine_code: tuple[Capability, ...]
    ptx: Capability | None

    def has_machine_code_for(self, capability: Capability) -> bool:
        return any(capability[0] == major and capability[1] >= minor for major, minor in self.machine_code)

    def has_ptx_for(self, capability: Capability) -> bool:
        return self.ptx is not None and capability >= self.ptx

    def __str__(self) -> str:
        code = ", ".join(_dotted(c) for c in self.machine_code)
        ptx = f"PTX {_dotted(self.ptx)}" if self.ptx else "no PTX"
        return f"{self.distribution} {self.version} (CUDA {_dotted(self.cuda)}, code for {code}, {ptx})"


KNOWN_BUILDS = (
    # faiss's own wheel, the GPU image's: CMAKE_CUDA_ARCHITECTURES
    # "70-real;75-real;80-real;86-real;89-real;90" and CUDA 12.6 (its pyproject-gpu.toml).
    FaissGpuBuild("faiss-gpu", "1.15.1", (12, 6), ((7, 0), (7, 5), (8, 0), (8, 6), (8, 9), (9, 0)), (9, 0)),
    # The community wheel the image had before: sm_70 and sm_80 only (its README: 7.0-8.9).
    FaissGpuBuild("faiss-gpu-cu12", "1.14.1.post1", (12, 1), ((7, 0), (8, 0)), None),
)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_build() -> FaissGpuBuild | None:
    """The entry of :data:`KNOWN_BUILDS` that provides ``faiss`` here, if it is one of them."""
    for distribution in metadata.packages_distributions().get("faiss", []):
        found = (_canonical(distribution), metadata.version(distribution))
        for build in KNOWN_BUILDS:
            if (build.distribution, build.version) == found:
                return build
    return None


@dataclass(frozen=True)
class Gpu:
    """A GPU as the driver describes it."""

    ordinal: int
    name: str
    capability: Capability
    driver_cuda: Capability
    """The newest CUDA version the driver supports."""

    def __str__(self) -> str:
        return f"GPU {self.ordinal} ({self.name}, compute capability {_dotted(self.capability)})"


def check_gpu(ordinal: int, driver: Driver, build: FaissGpuBuild | None) -> Gpu:
    """GPU ``ordinal`` if ``build`` can run on it with this driver, else :class:`GpuUnavailable`.

    An unknown build (``None``: built from source, conda) is let through with a warning:
    what code it holds is not known here.
    """
    try:
        count = driver.device_count()
        if ordinal >= count:
            raise GpuUnavailable(
                f"GPU {ordinal} was asked for but the driver sees {count}: check CUDA_VISIBLE_DEVICES "
                "and the GPUs given to the container"
            )
        gpu = Gpu(ordinal, driver.name(ordinal), driver.compute_capability(ordinal), driver.cuda_version())
    except CudaError as error:
        raise GpuUnavailable(f"the CUDA driver failed: {error}") from error
    if build is None:
        logger.warning("%s: the faiss build here is not a known one; its GPU code is not checked", gpu)
        return gpu
    if gpu.driver_cuda[0] < build.cuda[0]:
        raise GpuUnavailable(
            f"the NVIDIA driver supports CUDA {_dotted(gpu.driver_cuda)}; {build} needs a driver for "
            f"CUDA {build.cuda[0]} ({_OLDEST_DRIVER.get(build.cuda[0], 'a newer branch')} or newer)"
        )
    if build.has_machine_code_for(gpu.capability):
        return gpu
    if build.has_ptx_for(gpu.capability):
        if gpu.driver_cuda < build.cuda:
            raise GpuUnavailable(
                f"{gpu} runs {build} only by compiling its PTX, which needs a driver for CUDA "
                f"{_dotted(build.cuda)} or newer; this one supports CUDA {_dotted(gpu.driver_cuda)}"
            )
        logger.warning(
            "%s has no machine code in %s: the driver compiles its PTX at first use, so the first "
            "searches are slow (and this combination is not measured)",
            gpu,
            build,
        )
        return gpu
    raise GpuUnavailable(
        f"{gpu} cannot run {build}: faiss would abort at its first search. Build the search image "
        "with a faiss for this GPU, or set FACEREC_SEARCH_DEVICE=cpu"
    )


def usable_gpu(ordinal: int, build: FaissGpuBuild | None) -> Gpu:
    """:func:`check_gpu` on the machine's driver; :class:`GpuUnavailable` without one."""
    try:
        driver = open_driver()
    except OSError as error:
        raise GpuUnavailable(
            f"no NVIDIA driver here ({error}): run the container with the NVIDIA Container Toolkit "
            "and a GPU given to it (compose: deploy.resources.reservations.devices; Kubernetes: "
            "nvidia.com/gpu)"
        ) from error
    except CudaError as error:
        raise GpuUnavailable(f"the NVIDIA driver did not start: {error}") from error
    return check_gpu(ordinal, driver, build)
