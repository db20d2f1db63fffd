"""NVIDIA's perf_analyzer on every model of a running Triton, batch by batch, its CSV read back.

One run per model and batch size at a fixed number of requests in flight; batch sizes above
a model's ``max_batch_size`` (read from its config in the repository) are left out, since
Triton refuses them. Latencies in perf_analyzer's CSV are microseconds.
"""

from __future__ import annotations

import csv
import io
import math
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


def command(
    base: Sequence[str], model: str, url: str, batch: int, concurrency: int, interval_ms: int, out: Path
) -> list[str]:
    """``base`` is how to start perf_analyzer (a path, or a ``docker run`` of NVIDIA's SDK image)."""
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
        # Three windows within 20 % of each other, in up to 20 tries: a first run on a borrowed
        # machine should give a figure rather than "no stable measurement".
        "--stability-percentage",
        "20",
        "--max-trials",
        "20",
        "-f",
        str(out),
    ]


def read_csv(text: str, model: str, batch: int) -> PerfRun:
    """The last row of a ``-f`` report (one concurrency level per row)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise ValueError(f"perf_analyzer wrote no measurement for {model} at batch {batch}")
    row = rows[-1]
    return PerfRun(
        model,
        batch,
        int(row["Concurrency"]),
        float(row["Inferences/Second"]),
        float(row["p50 latency"]) / 1000,
        float(row["p99 latency"]) / 1000,
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
                runs.append(_one(base, url, spec.name, batch, concurrency, interval_ms, out, timeout_s))
            except (OSError, RuntimeError, ValueError, KeyError, subprocess.TimeoutExpired) as error:
                runs.append(PerfRun(spec.name, batch, concurrency, math.nan, math.nan, math.nan, str(error)))
    return runs


def _one(
    base: Sequence[str],
    url: str,
    model: str,
    batch: int,
    concurrency: int,
    interval_ms: int,
    out: Path,
    timeout_s: float,
) -> PerfRun:
    """One measurement; once more with windows twice as long if it was not stable."""
    log = out.with_suffix(".log")
    for interval in (interval_ms, 2 * interval_ms):
        argv = command(base, model, url, batch, concurrency, interval, out)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        log.write_text(done.stdout + done.stderr)
        if done.returncode == 0:
            return read_csv(out.read_text(), model, batch)
        if UNSTABLE not in done.stdout + done.stderr:
            break
    raise RuntimeError(f"exit {done.returncode}: {_last_line(done.stdout + done.stderr)} ({log.name})")


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
