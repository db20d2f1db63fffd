"""The CUDA driver through ctypes (against a fake library) and the table of faiss GPU builds."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from packaging.requirements import Requirement

from search_service.cuda_driver import CudaError, LibCuda
from search_service.gpu_support import GpuUnavailable, installed_build, usable_gpu
from tests.search_service.conftest import ROOT
from tests.search_service.gpu_fakes import FAISS_GPU, FAISS_GPU_CU12, known_build

pytestmark = pytest.mark.unit

ERROR_NAMES = {100: b"CUDA_ERROR_NO_DEVICE", 101: b"CUDA_ERROR_INVALID_DEVICE"}


def written(pointer: Any, value: object) -> int:
    """Store ``value`` where a ``ctypes.byref`` argument points; CUDA_SUCCESS."""
    pointer._obj.value = value
    return 0


class FakeLibCuda:
    """Answers the driver calls LibCuda makes, as libcuda.so.1 would for one H100."""

    def __init__(self, init_error: int = 0) -> None:
        self.init_error = init_error

    def cuInit(self, flags: int) -> int:
        return self.init_error

    def cuGetErrorName(self, code: int, name: Any) -> int:
        if code not in ERROR_NAMES:
            return 1  # CUDA_ERROR_INVALID_VALUE, name left NULL
        return written(name, ERROR_NAMES[code])

    def cuDriverGetVersion(self, version: Any) -> int:
        return written(version, 12080)

    def cuDeviceGetCount(self, count: Any) -> int:
        return written(count, 1)

    def cuDeviceGet(self, device: Any, ordinal: int) -> int:
        return 101 if ordinal >= 1 else written(device, ordinal)

    def cuDeviceGetName(self, buffer: Any, size: int, device: int) -> int:
        buffer.value = b"NVIDIA H100 80GB HBM3"
        return 0

    def cuDeviceGetAttribute(self, value: Any, attribute: int, device: int) -> int:
        return written(value, {75: 9, 76: 0}[attribute])


def driver(init_error: int = 0) -> LibCuda:
    return LibCuda(FakeLibCuda(init_error))  # type: ignore[arg-type]


def test_the_driver_describes_its_gpus() -> None:
    cuda = driver()
    assert cuda.cuda_version() == (12, 8)
    assert cuda.device_count() == 1
    assert cuda.name(0) == "NVIDIA H100 80GB HBM3"
    assert cuda.compute_capability(0) == (9, 0)


def test_driver_errors_are_exceptions_with_their_names() -> None:
    with pytest.raises(CudaError, match=r"cuInit failed with CUDA_ERROR_NO_DEVICE \(100\)") as failed:
        driver(init_error=100)
    assert failed.value.code == 100
    with pytest.raises(CudaError, match=r"cuDeviceGet failed with CUDA_ERROR_INVALID_DEVICE \(101\)"):
        driver().compute_capability(1)
    with pytest.raises(CudaError, match=r"cuInit failed with an unknown error \(4242\)"):
        driver(init_error=4242)


def test_no_driver_on_this_machine_is_a_clean_refusal() -> None:
    # No GPU here: libcuda.so.1 is absent, or present without a device. Either way, a refusal.
    with pytest.raises(GpuUnavailable, match="NVIDIA driver"):
        usable_gpu(0, FAISS_GPU)


def test_this_machine_runs_no_known_gpu_build() -> None:
    assert installed_build() is None  # faiss-cpu


@pytest.mark.parametrize(
    ("capability", "native", "through_ptx"),
    [
        ((7, 0), True, False),
        ((7, 5), True, False),
        ((8, 6), True, False),
        ((8, 7), True, False),  # Orin: 8.6 code
        ((9, 0), True, True),
        ((10, 0), False, True),
        ((12, 0), False, True),
        ((6, 1), False, False),
    ],
)
def test_what_faiss_gpu_runs_on(capability: tuple[int, int], native: bool, through_ptx: bool) -> None:
    assert FAISS_GPU.has_machine_code_for(capability) == native
    assert FAISS_GPU.has_ptx_for(capability) == through_ptx


def test_the_old_wheel_had_no_hopper_code() -> None:
    assert FAISS_GPU_CU12.has_machine_code_for((8, 9))
    assert not FAISS_GPU_CU12.has_machine_code_for((9, 0)) and not FAISS_GPU_CU12.has_ptx_for((9, 0))


def test_the_gpu_image_installs_a_known_build_with_hopper_code() -> None:
    # Bumping the pin means listing the new wheel's code here (cuobjdump --list-elf on its libfaiss).
    pins = {}
    for line in (ROOT / "deploy" / "docker" / "constraints-gpu.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            pins[requirement.name] = str(requirement.specifier).removeprefix("==")
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    (faiss_requirement,) = (Requirement(r) for r in extra if Requirement(r).name.startswith("faiss"))
    build = known_build(faiss_requirement.name)
    assert (
        str(faiss_requirement.specifier) == f"=={build.version}" and pins[build.distribution] == build.version
    )
    assert build.has_machine_code_for((9, 0))
    # The CUDA runtime pinned beside it is the toolkit the wheel was built with.
    assert pins["nvidia-cuda-runtime-cu12"].startswith("{}.{}.".format(*build.cuda))
