"""Choosing the device: the setting, the GPU check before faiss, one GPU resources object.

No GPU here: the driver and faiss's GPU functions are fakes (:mod:`gpu_fakes`), and faiss
itself is the CPU wheel, whose own path must stay as it was.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from search_service.collection import Limits
from search_service.cuda_driver import CudaError
from search_service.device import CpuDevice, ReplicaDevice, make_device
from search_service.gpu_support import FaissGpuBuild, GpuUnavailable
from search_service.schema import CollectionSpec
from search_service.settings import DeviceChoice, SearchSettings, parse_device
from tests.search_service.conftest import CollectionOpener, unit_vectors
from tests.search_service.gpu_fakes import (
    FAISS_GPU,
    FAISS_GPU_CU12,
    FakeDriver,
    FakeGpuFaiss,
    install_build,
    install_driver,
)

pytestmark = pytest.mark.unit

DIM = 16
TEMP = 256 << 20


def device_for(setting: str) -> CpuDevice | ReplicaDevice:
    return make_device(parse_device(setting), temp_memory_bytes=TEMP)


@pytest.mark.parametrize(
    ("setting", "choice"),
    [
        ("auto", DeviceChoice("auto")),
        ("cpu", DeviceChoice("cpu")),
        ("gpu", DeviceChoice("gpu", 0)),
        ("GPU:1", DeviceChoice("gpu", 1)),
        ("gpu-or-cpu", DeviceChoice("gpu-or-cpu")),
    ],
)
def test_device_settings(setting: str, choice: DeviceChoice) -> None:
    assert SearchSettings(device=setting).device_choice == choice
    assert choice.may_fall_back == (setting == "gpu-or-cpu")


@pytest.mark.parametrize("bad", ["tpu", "gpu:x", "gpu:", "cpu:0", "auto-fallback"])
def test_bad_device_settings_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="gpu-or-cpu"):
        SearchSettings(device=bad)


@pytest.mark.parametrize("setting", ["cpu", "auto"])
def test_the_cpu_path_is_unchanged(setting: str) -> None:
    # This machine's faiss is the CPU wheel: auto means the CPU, with nothing to fall back from.
    device = device_for(setting)
    assert device == CpuDevice()


def test_a_gpu_asked_of_a_cpu_faiss_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    for setting in ("gpu", "gpu:0"):
        with pytest.raises(GpuUnavailable, match="has no GPU support"):
            device_for(setting)
    with caplog.at_level(logging.WARNING, "search_service.device"):
        device = device_for("gpu-or-cpu")
    assert isinstance(device, CpuDevice) and "has no GPU support" in (device.fallback_reason or "")
    assert "as FACEREC_SEARCH_DEVICE=gpu-or-cpu allows" in caplog.text


@pytest.fixture
def fake_faiss(monkeypatch: pytest.MonkeyPatch) -> FakeGpuFaiss:
    fake = FakeGpuFaiss()
    fake.install(monkeypatch)
    return fake


REFUSED: list[tuple[str, FakeDriver | Exception, FaissGpuBuild, str]] = [
    (
        "no driver in the container",
        OSError("libcuda.so.1: cannot open shared object file"),
        FAISS_GPU,
        "no NVIDIA driver here",
    ),
    (
        "the driver sees no GPU",
        CudaError("cuInit", 100, "CUDA_ERROR_NO_DEVICE"),
        FAISS_GPU,
        "did not start: cuInit failed with CUDA_ERROR_NO_DEVICE",
    ),
    ("a driver call fails", FakeDriver(fail=999), FAISS_GPU, "the CUDA driver failed"),
    (
        "a CUDA 11 driver",
        FakeDriver(cuda=(11, 4)),
        FAISS_GPU,
        r"needs a driver for CUDA 12 \(R525 or newer\)",
    ),
    (
        "Hopper on the old wheel",
        FakeDriver([("NVIDIA H100 80GB HBM3", (9, 0))]),
        FAISS_GPU_CU12,
        r"GPU 0 \(NVIDIA H100 80GB HBM3, compute capability 9.0\) cannot run faiss-gpu-cu12 1.14.1.post1",
    ),
    (
        "Blackwell on the old wheel",
        FakeDriver([("NVIDIA B200", (10, 0))]),
        FAISS_GPU_CU12,
        "compute capability 10.0",
    ),
    (
        "Blackwell with a driver older than faiss-gpu's PTX",
        FakeDriver([("NVIDIA B200", (10, 0))], cuda=(12, 4)),
        FAISS_GPU,
        r"only by compiling its PTX, which needs a driver for CUDA 12.6 or newer",
    ),
    ("Pascal", FakeDriver([("Tesla P100-PCIE-16GB", (6, 0))]), FAISS_GPU, "compute capability 6.0"),
]


@pytest.mark.parametrize(("driver", "build", "reason"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_an_unusable_gpu_is_refused_before_faiss_touches_it(
    monkeypatch: pytest.MonkeyPatch,
    fake_faiss: FakeGpuFaiss,
    driver: FakeDriver | Exception,
    build: FaissGpuBuild,
    reason: str,
) -> None:
    install_driver(monkeypatch, driver)
    install_build(monkeypatch, build)
    for setting in ("auto", "gpu", "gpu:0"):
        with pytest.raises(GpuUnavailable, match=reason):
            device_for(setting)
    fallback = device_for("gpu-or-cpu")  # the one setting that may fall back
    assert isinstance(fallback, CpuDevice) and re.search(reason, fallback.fallback_reason or "")
    assert fake_faiss.calls == []  # faiss was asked nothing: nothing could abort


def test_a_gpu_that_is_not_there_is_refused(
    monkeypatch: pytest.MonkeyPatch, fake_faiss: FakeGpuFaiss
) -> None:
    install_driver(monkeypatch, FakeDriver())
    install_build(monkeypatch, FAISS_GPU)
    with pytest.raises(GpuUnavailable, match="GPU 1 was asked for but the driver sees 1"):
        device_for("gpu:1")
    assert fake_faiss.calls == []


ACCEPTED: list[tuple[str, tuple[int, int], tuple[int, int], FaissGpuBuild | None]] = [
    ("NVIDIA H100 80GB HBM3", (9, 0), (12, 2), FAISS_GPU),
    ("NVIDIA H200", (9, 0), (12, 4), FAISS_GPU),
    ("NVIDIA L4", (8, 9), (12, 2), FAISS_GPU),
    ("NVIDIA A100-SXM4-80GB", (8, 0), (12, 0), FAISS_GPU),
    ("NVIDIA A10", (8, 6), (12, 2), FAISS_GPU_CU12),  # sm_80 code runs on 8.6
    ("Tesla T4", (7, 5), (12, 2), FAISS_GPU),
    ("Tesla V100-SXM2-16GB", (7, 0), (12, 2), FAISS_GPU),
    ("NVIDIA B200", (10, 0), (12, 8), FAISS_GPU),  # through faiss-gpu's PTX 9.0
    ("NVIDIA GeForce RTX 5090", (12, 0), (12, 8), FAISS_GPU),
    ("NVIDIA H100 80GB HBM3", (9, 0), (12, 2), None),  # a build of unknown code: let through
]


@pytest.mark.parametrize(("name", "capability", "cuda", "build"), ACCEPTED)
def test_a_usable_gpu_is_used(
    monkeypatch: pytest.MonkeyPatch,
    fake_faiss: FakeGpuFaiss,
    name: str,
    capability: tuple[int, int],
    cuda: tuple[int, int],
    build: FaissGpuBuild | None,
) -> None:
    install_driver(monkeypatch, FakeDriver([(name, capability)], cuda=cuda))
    install_build(monkeypatch, build)
    for setting in ("auto", "gpu", "gpu-or-cpu"):
        device = device_for(setting)
        assert isinstance(device, ReplicaDevice) and device.name == "gpu:0"
        assert device.search_primary_when_lost == (setting == "gpu-or-cpu")
        device.close()


@pytest.fixture
def gpu_device(monkeypatch: pytest.MonkeyPatch, fake_faiss: FakeGpuFaiss) -> Iterator[ReplicaDevice]:
    install_driver(monkeypatch, FakeDriver())
    install_build(monkeypatch, FAISS_GPU)
    device = device_for("gpu")
    assert isinstance(device, ReplicaDevice)
    yield device
    device.close()


async def test_one_gpu_resources_object_per_process(
    tmp_path: Path, gpu_device: ReplicaDevice, open_collection: CollectionOpener, fake_faiss: FakeGpuFaiss
) -> None:
    rng = np.random.default_rng(1)
    gallery = unit_vectors(rng, 400, DIM)
    ids = np.arange(400, dtype=np.int64)
    limits = Limits(max_tombstones=5)
    flat = open_collection(tmp_path / "flat", CollectionSpec(dim=DIM), device=gpu_device, limits=limits)
    ivf_spec = CollectionSpec(dim=DIM, index="ivf", nlist=4, nprobe=4)
    ivf = open_collection(tmp_path / "ivf", ivf_spec, device=gpu_device, limits=limits)
    await flat.add(ids, gallery)
    await ivf.add(ids, gallery)  # trained here: a new copy
    await flat.delete(ids[:10])  # past 5 tombstones: a new copy
    assert flat.info().device == ivf.info().device == "gpu:0"

    assert fake_faiss.calls.count("index_cpu_to_gpu:0") == 4
    (resources,) = fake_faiss.resources  # made once, on the device thread, before any copy
    assert fake_faiss.calls[0] == "StandardGpuResources"
    assert resources.temp_memory == TEMP
    assert all(used is resources for used in fake_faiss.used_with)
