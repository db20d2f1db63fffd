"""``make bench-triton`` briefly, end to end: the real Triton, the real perf_analyzer, the report read back.

perf_analyzer is the binary ``make tools`` installs; where it cannot run (not installed, a
library missing) the end-to-end test is skipped, and fails under CI=true.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest

from loadtests import bench_triton, perf_analyzer
from orchestrator.modelrepo import tuning
from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.runtime.triton_env import TritonEnvironment
from tests.conftest import unavailable

# perf_analyzer 2.51's printed report for one level, as it wrote one against the CPU Triton.
REPORT = """Request concurrency: 8
  Server:
    Inference count: 256
    Execution count: 32
    Successful request count: 256
"""
CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
    "8,71.0441,20,1056,1537,281,107091,796,1,104578,136779,145143,152461\n"
)


@pytest.mark.unit
def test_the_server_side_figures_are_read_in_milliseconds() -> None:
    run = perf_analyzer.read_csv(CSV, "arcface", 1)
    assert run.queue_ms == pytest.approx(1.537)
    assert run.compute_ms == pytest.approx((281 + 107091 + 796) / 1000)
    assert perf_analyzer.server_batch(REPORT) == 8.0
    assert math.isnan(perf_analyzer.server_batch("Request concurrency: 8\n"))


@pytest.fixture(scope="module")
def perf_command(data_dir: Path) -> list[str]:
    base = perf_analyzer.local_command(data_dir)
    if base is None:
        unavailable("perf_analyzer is not installed: `make tools` installs it")
    assert base is not None
    try:
        perf_analyzer.version(base)
    except RuntimeError as error:
        unavailable(f"{error}; `make tools` installs what it needs")
    return base


@pytest.mark.load
@pytest.mark.integration
def test_every_model_is_measured_through_triton_and_in_process(
    perf_command: list[str],
    model_store: ModelStore,
    triton_env: TritonEnvironment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = bench_triton.main(
        [
            *("--name", "brief", "--results", str(tmp_path), "--logs", str(tmp_path / "logs")),
            *(
                "--repository",
                str(model_store.repository("cpu")),
                "--perf-analyzer",
                shlex.join(perf_command),
            ),
            # Loose stability: this checks the wiring, not the figures, on shared cores.
            *("--concurrency", "1,4", "--interval-ms", "500", "--stability", "100", "--max-trials", "20"),
            *("--seconds", "0.2", "--batches", "1,4"),
        ]
    )
    assert code == 0, capsys.readouterr().err

    bench = json.loads((tmp_path / "brief.json").read_text())
    assert bench["perf_analyzer"].startswith("2.") and bench["cores"] >= 1
    assert [m["model"] for m in bench["models"]] == [spec.name for spec in DEFAULT_MODELS]
    for model in bench["models"]:
        own = model["in_process"]
        assert own["processes"] == bench["cores"] and own["best_batch"] in (1, 4)
        assert own["batch1_per_s"] > 0 and own["best_per_s"] > 0
        assert own["limit"] == max(own["batch1_per_s"], own["best_per_s"])
        assert [run["concurrency"] for run in model["triton"]] == [1, 4]
        for run in model["triton"]:
            assert run["error"] is None and run["batch"] == 1
            assert run["inferences_per_s"] > 0
            assert 0 < run["p50_ms"] <= run["p99_ms"]
            assert run["queue_ms"] >= 0 and run["compute_ms"] > 0
            assert run["ratio"] == pytest.approx(run["inferences_per_s"] / own["limit"])
        # One request in flight: every execution is a batch of one.
        assert model["triton"][0]["server_batch"] == 1.0
        assert (tmp_path / "logs" / f"{model['model']}-c4.csv").is_file()
    # perf_analyzer sent the in-process inputs, not its own random bytes.
    for spec in DEFAULT_MODELS:
        sent = (tmp_path / "logs" / "inputs" / spec.name / spec.input.name).read_bytes()
        assert sent == tuning.probe_inputs(spec, 1)[spec.input.name].tobytes()

    report = (tmp_path / "brief.md").read_text()
    arcface = bench["models"][-1]
    row = arcface["triton"][-1]
    assert f"## arcface\n\nIn process, level {arcface['in_process']['level']!r}" in report
    assert f"| 4 | {row['inferences_per_s']:.1f} | {row['p50_ms']:.1f} |" in report
    assert f"| {row['ratio']:.2f} |\n" in report
    assert report in capsys.readouterr().out
