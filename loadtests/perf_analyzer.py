"""NVIDIA's perf_analyzer on every model of a running Triton, batch by batch, its CSV read back.

One run per model and batch size at a fixed number of requests in flight; batch sizes above
a model's ``max_batch_size`` (read from its config in the repository) are left out, since
Triton refuses them. Latencies in perf_analyzer's CSV are microseconds.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from orchestrator.modelrepo.repository import parse

BATCHES = (1, 2, 4, 8, 16, 32, 64)
UNSTABLE = "Failed to obtain stable measurement"


@dataclass(frozen=True)
class PerfRun:
    model: str
    batch: int
    concurrency: int
    inferences_per_s: float
    p50_ms: float
    p99_ms: float
    error: str | None = None
    queue_ms: float = math.nan
    """Server side, per request: waiting in the scheduler's queue (the dynamic batcher's delay too)."""
    compute_ms: float = math.nan
    """Server side, per request: input, inference and output of the batch it ran in."""
    server_batch: float = math.nan
    """Server side: inferences per model execution, the batch the dynamic batcher formed."""


def local_command(data_dir: Path) -> list[str] | None:
    """perf_analyzer as ``make tools`` installs it under the data directory, with its CUDA
    runtime on the library path; else the one on PATH; None if there is neither."""
    venv = data_dir / "tools" / "perf-analyzer"
    binary = venv / "bin" / "perf_analyzer"
    if binary.is_file():
        libs = [str(lib) for lib in venv.glob("lib/python*/site-packages/nvidia/cuda_runtime/lib")]
        libs += [os.environ["LD_LIBRARY_PATH"]] if os.environ.get("LD_LIBRARY_PATH") else []
        return ["env", f"LD_LIBRARY_PATH={os.pathsep.join(libs)}", str(binary)]
    found = shutil.which("perf_analyzer")
    return [found] if found else None


def version(base: Sequence[str]) -> str:
    """Its version; RuntimeError in its own words when it cannot run (a missing library)."""
    try:
        done = subprocess.run([*base, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as error:
        raise RuntimeError(f"perf_analyzer cannot run: {error}") from error
    text = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"perf_analyzer cannot run: {_last_line(text)}")
    found = re.search(r"Version (\S+)", text)
    return found[1] if found else _last_line(text)


def command(
    base: Sequence[str],
    model: str,
    url: str,
    batch: int,
    concurrency: int,
    interval_ms: int,
    out: Path,
    stability_percent: int = 20,
    max_trials: int = 20,
    input_data: Path | None = None,
) -> list[str]:
    """``base`` is how to start perf_analyzer (a path, or a ``docker run`` of NVIDIA's SDK image).

    It measures until three windows in a row are within ``stability_percent`` of each other,
    in up to ``max_trials`` windows: 20 and 20 so that a first run on a borrowed machine gives
    a figure rather than "no stable measurement". ``input_data``: a directory with a file of
    raw bytes per input, named after it; without one perf_analyzer sends random bytes, which
    as floats are NaNs and huge values that some models run through twice as fast as real data.
    """
    return [
        *base,
        "-m",
        model,
        "-u",
        url,
        "-i",
        "grpc",
        "-b",
        str(batch),
        "--concurrency-range",
        str(concurrency),
        "--measurement-interval",
        str(interval_ms),
        "--stability-percentage",
        str(stability_percent),
        "--max-trials",
        str(max_trials),
        "-f",
        str(out),
        *(("--input-data", str(input_data)) if input_data else ()),
    ]


def read_csv(text: str, model: str, batch: int) -> PerfRun:
    """The last row of a ``-f`` report (one concurrency level per row)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise ValueError(f"perf_analyzer wrote no measurement for {model} at batch {batch}")
    row = rows[-1]
    compute = ("Server Compute Input", "Server Compute Infer", "Server Compute Output")
    return PerfRun(
        model,
        batch,
        int(row["Concurrency"]),
        float(row["Inferences/Second"]),
        float(row["p50 latency"]) / 1000,
        float(row["p99 latency"]) / 1000,
        queue_ms=float(row.get("Server Queue") or "nan") / 1000,
        compute_ms=sum(float(row.get(k) or "nan") for k in compute) / 1000,
    )


def batches_for(repository: Path, model: str, wanted: Sequence[int]) -> list[int]:
    limit = parse((repository / model / "config.pbtxt").read_text()).max_batch_size
    return [b for b in wanted if b <= limit]


def run_all(
    base: Sequence[str],
    url: str,
    repository: Path,
    out_dir: Path,
    batches: Sequence[int] = BATCHES,
    concurrency: int = 4,
    interval_ms: int = 5000,
    timeout_s: float = 600.0,
) -> list[PerfRun]:
    """Every catalog model at every batch size it takes; a failed run is a row with its error."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for spec in DEFAULT_MODELS:
        for batch in batches_for(repository, spec.name, batches):
            out = out_dir / f"{spec.name}-b{batch}.csv"
            try:
                runs.append(measure(base, url, spec.name, batch, concurrency, interval_ms, out, timeout_s))
            except (OSError, RuntimeError, ValueError, KeyError, subprocess.TimeoutExpired) as error:
                runs.append(PerfRun(spec.name, batch, concurrency, math.nan, math.nan, math.nan, str(error)))
    return runs


def measure(
    base: Sequence[str],
    url: str,
    model: str,
    batch: int,
    concurrency: int,
    interval_ms: int,
    out: Path,
    timeout_s: float,
    stability_percent: int = 20,
    max_trials: int = 20,
    input_data: Path | None = None,
) -> PerfRun:
    """One measurement; once more with windows twice as long if it was not stable."""
    log = out.with_suffix(".log")
    for interval in (interval_ms, 2 * interval_ms):
        argv = command(
            base, model, url, batch, concurrency, interval, out, stability_percent, max_trials, input_data
        )
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        log.write_text(done.stdout + done.stderr)
        if done.returncode == 0:
            return dataclasses.replace(
                read_csv(out.read_text(), model, batch), server_batch=server_batch(done.stdout)
            )
        if UNSTABLE not in done.stdout + done.stderr:
            break
    raise RuntimeError(f"exit {done.returncode}: {_last_line(done.stdout + done.stderr)} ({log.name})")


def server_batch(report: str) -> float:
    """Inferences per execution from perf_analyzer's printed report (its CSV has no count)."""
    inferences = re.search(r"Inference count: (\d+)", report)
    executions = re.search(r"Execution count: (\d+)", report)
    if not inferences or not executions or not int(executions[1]):
        return math.nan
    return int(inferences[1]) / int(executions[1])


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no output")


def table(runs: Sequence[PerfRun]) -> str:
    """Markdown; images or faces per second is inferences per second (one per batch item)."""
    lines = [
        "| model | batch | in flight | inferences/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        if r.error:
            lines.append(f"| {r.model} | {r.batch} | {r.concurrency} | failed: {r.error} | | |")
        else:
            lines.append(
                f"| {r.model} | {r.batch} | {r.concurrency} | {r.inferences_per_s:.1f} "
                f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} |"
            )
    return "\n".join(lines) + "\n"
