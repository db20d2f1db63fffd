"""The allocator settings: this process takes them (mallopt); Triton's children get them by environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.runtime.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD, keep_freed_memory
from orchestrator.runtime.triton_env import TritonEnvironment
from orchestrator.runtime.triton_server import TritonPorts, TritonServer

pytestmark = pytest.mark.unit


def test_glibc_takes_the_settings() -> None:
    assert keep_freed_memory() is True


def _server(tmp_path: Path) -> TritonServer:
    return TritonServer(TritonEnvironment(tmp_path), tmp_path, tmp_path / "log", TritonPorts(1, 2, 3), [])


def test_triton_gets_them_unless_the_operator_set_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _server(tmp_path).environment()
    assert (env["MALLOC_TRIM_THRESHOLD_"], env["MALLOC_MMAP_THRESHOLD_"]) == (
        str(TRIM_THRESHOLD),
        str(MMAP_THRESHOLD),
    )
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert _server(tmp_path).environment()["MALLOC_MMAP_THRESHOLD_"] == "131072"
