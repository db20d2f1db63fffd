"""Benchmarks that print ratios against the physical limit measured in the same run.

``facerec bench embedder``: faces/s of the ArcFace embedder in ONNX Runtime with one
single-threaded process per core (the physical limit, at its best batch size) and through
Triton with concurrent single-face callers (what dynamic batching has to turn into
batches), as a ratio.
``facerec bench stages``: milliseconds per image for decode, detect, landmarks, align and
embed, over a set of photos, run one image at a time.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from orchestrator.clients.triton import TritonModels
from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.modelrepo.repository import MODEL_FILE
from orchestrator.modelrepo.tuning import configured_level, cores, instances_per_s
from orchestrator.pipeline.face_pipeline import FacePipeline


def physical_limit(repository: Path, batch_sizes: Iterable[int], seconds: float) -> dict[int, float]:
    """faces/s of the embedder with nothing in the way: one single-threaded ONNX Runtime
    process per core, at the level the CPU repository's config gives it (tuned for this CPU)."""
    level = configured_level(repository, ARCFACE)
    model = repository / ARCFACE.name / "1" / MODEL_FILE
    return {batch: instances_per_s(model, ARCFACE, level, cores(), seconds, batch) for batch in batch_sizes}


async def through_triton(url: str, clients: int, seconds: float) -> tuple[float, list[float]]:
    """faces/s and per-request latencies (ms) with ``clients`` callers sending one face each."""
    face = np.random.default_rng(1).uniform(-1, 1, (1, *ARCFACE.input.dims)).astype(np.float32)
    latencies: list[float] = []
    async with TritonModels(url, timeout_s=60.0) as triton:
        await triton.infer(ARCFACE.name, face)
        deadline = time.perf_counter() + seconds

        async def caller() -> int:
            done = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                await triton.infer(ARCFACE.name, face)
                latencies.append((time.perf_counter() - t0) * 1000)
                done += 1
            return done

        start = time.perf_counter()
        counts = await asyncio.gather(*(caller() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return sum(counts) / elapsed, latencies


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def embedder_report(repository: Path, url: str, clients: Iterable[int], seconds: float) -> str:
    limit = physical_limit(repository, (1, 8, 32), seconds)
    best = max(limit.values())
    lines = ["| path | faces/s | × physical limit | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for batch, rate in limit.items():
        lines.append(
            f"| ONNX Runtime, {cores()} single-threaded processes, batch {batch} | {rate:.1f} "
            f"| {rate / best:.2f} | | |"
        )
    for n in clients:
        rate, latencies = asyncio.run(through_triton(url, n, seconds))
        lines.append(
            f"| Triton, {n} concurrent single-face callers | {rate:.1f} | {rate / best:.2f} "
            f"| {_percentile(latencies, 50):.1f} | {_percentile(latencies, 99):.1f} |"
        )
    return "\n".join(lines)


async def _stage_times(url: str, images: list[bytes], rounds: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {}
    async with TritonModels(url, timeout_s=60.0) as triton:
        pipeline = FacePipeline(triton)
        await pipeline.analyse(images[0])
        for _ in range(rounds):
            for data in images:
                analysis = await pipeline.analyse(data)
                for stage, ms in analysis.timings_ms.items():
                    timings.setdefault(stage, []).append(ms)
    return timings


def stages_report(url: str, paths: list[Path], rounds: int) -> str:
    timings = asyncio.run(_stage_times(url, [p.read_bytes() for p in paths], rounds))
    lines = ["| stage | median ms/image | p95 ms |", "|---|---|---|"]
    for stage, values in timings.items():
        lines.append(f"| {stage} | {statistics.median(values):.2f} | {_percentile(values, 95):.2f} |")
    return "\n".join(lines)
