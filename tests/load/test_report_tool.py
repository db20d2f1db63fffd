"""The report tool end to end on a tiny run: files written, ratios are numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from loadtests.report import run_report
from orchestrator.modelrepo.tuning import cores
from orchestrator.runtime.triton_server import TritonServer

pytestmark = [pytest.mark.load, pytest.mark.integration]


def test_tiny_report(triton_server: TritonServer, photos: Path, tmp_path: Path) -> None:
    out = run_report(
        "tiny",
        users=(1, 2),
        # Locust's run time includes its start; 3 s left a loaded machine with no request done.
        step_s=6,
        ceiling_s=1,
        variants=("triton",),
        results=tmp_path,
        ceiling_batches=(1, 4),
        triton=triton_server,
        beside_s=1,
    )
    for name in ("report.md", "results.json", "throughput.png", "latency.png", "triton.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    ratio = results["ratios"]["triton"]
    assert isinstance(ratio, float) and math.isfinite(ratio) and ratio > 0
    # Each step's ratio is to the limit measured on either side of it; the best of them is reported.
    assert all(math.isfinite(s["limit"]) and s["limit"] > 0 for s in results["steps"])
    assert ratio == max(s["throughput"] / s["limit"] for s in results["steps"])
    assert results["ceiling"]["correct"] == 1.0
    # The physical limit: one process, and one single-threaded process per core, each batch.
    settings = {(s["processes"], s["batch"]) for s in results["ceiling"]["settings"]}
    assert settings == {(p, b) for p in {1, cores()} for b in (1, 4)}
    assert all(s["images_per_s"] > 0 for s in results["ceiling"]["settings"])
    for step in results["steps"]:
        assert step["requests"] > 0 and step["failures"] == 0, step
        assert math.isfinite(step["batching"]["arcface"][0])
        # Every request runs the models in Triton's stubs and decodes in the orchestrator.
        assert {"triton", "orchestrator", "search"} <= set(step["cpu_ms"]), step
        assert step["cpu_ms"]["triton"] > 1.0 and step["cpu_ms"]["orchestrator"] > 1.0, step
        # The load generator's own CPU, on the same cores (its start-up in it): measured.
        assert math.isfinite(step["load_cpu_ms"]) and step["load_cpu_ms"] > 0.0, step
    report = (out / "report.md").read_text()
    assert "× limit" in report and "## CPU per request" in report
    assert f"Physical limit: {results['ceiling']['best']:.2f} images/s" in report
