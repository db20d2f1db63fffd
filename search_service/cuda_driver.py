"""The CUDA driver API through ctypes: what the GPUs are, asked without faiss.

faiss ends the process on a CUDA error (``CUDA_VERIFY`` is an assertion that calls
``abort()``, faiss/gpu/utils/DeviceUtils.h), so the start-up check asks ``libcuda.so.1``
directly, where a failure is an error code. The NVIDIA container toolkit mounts that library
into a GPU container; without it there is no driver to talk to. CUDA_VISIBLE_DEVICES applies
here as it does to faiss: device ordinals are the visible ones.
"""

from __future__ import annotations

import ctypes
from typing import Protocol

LIBRARY = "libcuda.so.1"
# CUdevice_attribute values, from cuda.h.
_COMPUTE_CAPABILITY_MAJOR = 75
_COMPUTE_CAPABILITY_MINOR = 76


class CudaError(RuntimeError):
    """A driver call answered something other than CUDA_SUCCESS."""

    def __init__(self, call: str, code: int, name: str) -> None:
        super().__init__(f"{call} failed with {name} ({code})")
        self.code = code


class Driver(Protocol):
    """What the start-up check asks of the driver (tests give a fake)."""

    def cuda_version(self) -> tuple[int, int]: ...

    def device_count(self) -> int: ...

    def name(self, ordinal: int) -> str: ...

    def compute_capability(self, ordinal: int) -> tuple[int, int]: ...


class LibCuda:
    """The driver library, initialised (``cuInit``) on construction."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._lib = library
        self._check("cuInit", library.cuInit(0))

    def _check(self, call: str, code: int) -> None:
        if code != 0:
            name = ctypes.c_char_p()  # stays NULL for a code the driver does not know
            self._lib.cuGetErrorName(code, ctypes.byref(name))
            raise CudaError(call, code, (name.value or b"an unknown error").decode())

    def _int(self, call: str, *args: int) -> int:
        value = ctypes.c_int()
        self._check(call, getattr(self._lib, call)(ctypes.byref(value), *args))
        return value.value

    def cuda_version(self) -> tuple[int, int]:
        """The newest CUDA version the driver supports, e.g. (12, 6) for R560."""
        version = self._int("cuDriverGetVersion")
        return version // 1000, version % 1000 // 10

    def device_count(self) -> int:
        return self._int("cuDeviceGetCount")

    def name(self, ordinal: int) -> str:
        device = self._int("cuDeviceGet", ordinal)
        buffer = ctypes.create_string_buffer(256)
        self._check("cuDeviceGetName", self._lib.cuDeviceGetName(buffer, len(buffer), device))
        return buffer.value.decode(errors="replace")

    def compute_capability(self, ordinal: int) -> tuple[int, int]:
        device = self._int("cuDeviceGet", ordinal)
        major = self._int("cuDeviceGetAttribute", _COMPUTE_CAPABILITY_MAJOR, device)
        minor = self._int("cuDeviceGetAttribute", _COMPUTE_CAPABILITY_MINOR, device)
        return major, minor


def open_driver() -> LibCuda:
    """The initialised driver: OSError if there is no driver library, CudaError if it does
    not start (no GPU, a kernel module of another version, ...)."""
    return LibCuda(ctypes.CDLL(LIBRARY))
