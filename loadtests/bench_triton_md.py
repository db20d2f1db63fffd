"""What ``loadtests.bench_triton`` measured, and its markdown and JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.perf_analyzer import PerfRun

CONCURRENCY = (1, 2, 4, 8, 16, 32)
BATCHES = (1, 2, 4, 8, 16, 32, 64)
"""Candidates for a model's best in-process batch (up to its ``max_batch_size``)."""


@dataclass(frozen=True)
class Settings:
    concurrency: tuple[int, ...] = CONCURRENCY
    interval_ms: int = 1500
    """perf_analyzer's measurement window (doubled once for a level that was not stable)."""
    stability_percent: int = 30
    max_trials: int = 10
    """Three windows in a row within ``stability_percent``, in up to ``max_trials``: looser than
    perf_analyzer's 10 %, since the cores are shared and a level that never settles is a gap."""
    seconds: float = 2.0
    """Per in-process measurement."""
    batches: tuple[int, ...] = BATCHES


@dataclass(frozen=True)
class InProcess:
    level: str
    processes: int
    batch1_per_s: float
    best_batch: int
    best_per_s: float
    single_by_batch: dict[int, float]
    """Items/s of one single-threaded process at each candidate batch."""

    @property
    def limit(self) -> float:
        return max(self.batch1_per_s, self.best_per_s)


@dataclass(frozen=True)
class ModelBench:
    model: str
    triton_instances: int
    in_process: InProcess
    triton: list[PerfRun]

    def ratio(self, run: PerfRun) -> float:
        """Triton's inferences/s over the in-process limit of the same run."""
        return run.inferences_per_s / self.in_process.limit


@dataclass(frozen=True)
class Bench:
    name: str
    command: str
    cpu: str
    cores: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    perf_analyzer: str
    onnxruntime: str
    settings: Settings
    elapsed_s: float
    models: list[ModelBench]


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.1f}"


def markdown(bench: Bench) -> str:
    def load(values: tuple[float, float, float]) -> str:
        return " / ".join(f"{v:.2f}" for v in values)

    settings = bench.settings
    lines = [
        f"# Triton and ONNX Runtime in process, model by model: {bench.name}",
        "",
        f"{bench.cpu}, {bench.cores} cores; load average (1/5/15 min) {load(bench.load_before)} before, "
        f"{load(bench.load_after)} after: on a shared machine others' work is in every figure. "
        f"perf_analyzer {bench.perf_analyzer} over gRPC, batch-1 requests, windows of "
        f"{settings.interval_ms} ms (3 within {settings.stability_percent} %); ONNX Runtime "
        f"{bench.onnxruntime} in process, {settings.seconds:g} s a measurement, the model at the "
        f"graph optimisation level its config gives Triton's stub, on the same random inputs. "
        "perf_analyzer runs on the same cores as Triton, as a client would on one machine. "
        f"Took {bench.elapsed_s / 60:.1f} min.",
        "",
        f"    {bench.command}",
    ]
    for model in bench.models:
        own = model.in_process
        single = ", ".join(f"{b}: {rate:.1f}" for b, rate in own.single_by_batch.items())
        best = (
            "its best batch too"
            if own.best_batch == 1
            else f"{own.best_per_s:.1f} at batch {own.best_batch}, its best"
        )
        lines += [
            "",
            f"## {model.model}",
            "",
            f"In process, level {own.level!r}, {own.processes} single-threaded processes: "
            f"{own.batch1_per_s:.1f} items/s at batch 1, {best} (one process, items/s by batch: {single}). "
            f"**Limit {own.limit:.1f} items/s.** Triton: {model.triton_instances} instance(s), "
            "dynamic batching on.",
            "",
            "| in flight | Triton inferences/s | p50 ms | p99 ms | server queue ms | server compute ms "
            "| batch formed | Triton / limit |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for run in model.triton:
            if run.error:
                lines.append(f"| {run.concurrency} | failed: {run.error} | | | | | | |")
                continue
            cells = [run.p50_ms, run.p99_ms, run.queue_ms, run.compute_ms, run.server_batch]
            lines.append(
                f"| {run.concurrency} | {run.inferences_per_s:.1f} | "
                + " | ".join(_number(cell) for cell in cells)
                + f" | {model.ratio(run):.2f} |"
            )
    return "\n".join(lines) + "\n"


def to_json(bench: Bench) -> str:
    raw = dataclasses.asdict(bench)
    for model, entry in zip(bench.models, raw["models"], strict=True):
        entry["in_process"]["limit"] = model.in_process.limit
        for run, row in zip(model.triton, entry["triton"], strict=True):
            row["ratio"] = model.ratio(run)
    return json.dumps(_finite(raw), indent=2)


def _finite(value: Any) -> Any:
    """NaN (a failed run) as null, which JSON has."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write(bench: Bench, results: Path) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{bench.name}.json").write_text(to_json(bench))
    out = results / f"{bench.name}.md"
    out.write_text(markdown(bench))
    return out
