"""Benchmarks that print ratios against the raw ONNX Runtime ceiling measured in the same run.

``facerec bench embedder``: faces/s of the ArcFace embedder in ONNX Runtime in this process
(the ceiling, at its best batch size) and through Triton with concurrent single-face
callers (what dynamic batching has to turn into batches), as a ratio.
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
import onnxruntime as ort

from orchestrator.clients.triton import TritonModels
from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.pipeline.face_pipeline import FacePipeline
from orchestrator.runtime.allocator import keep_freed_memory

_LEVELS = {
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def raw_ceiling(model: Path, batch_sizes: Iterable[int], seconds: float) -> dict[int, float]:
    """faces/s of the embedder in ONNX Runtime, same optimisation level as the CPU repository."""
    keep_freed_memory()  # as Triton's model processes run
    options = ort.SessionOptions()
    options.graph_optimization_level = _LEVELS[ARCFACE.cpu_graph_optimization]
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    rates = {}
    for batch in batch_sizes:
        x = rng.uniform(-1, 1, (batch, *ARCFACE.input.dims)).astype(np.float32)
        session.run(None, {ARCFACE.input.name: x})
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            session.run(None, {ARCFACE.input.name: x})
            runs += 1
        rates[batch] = batch * runs / (time.perf_counter() - start)
    return rates


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


def embedder_report(model: Path, url: str, clients: Iterable[int], seconds: float) -> str:
    ceiling = raw_ceiling(model, (1, 8, 32), seconds)
    best = max(ceiling.values())
    lines = ["| path | faces/s | ratio to ceiling | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for batch, rate in ceiling.items():
        lines.append(f"| ONNX Runtime in-process, batch {batch} | {rate:.1f} | {rate / best:.2f} | | |")
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
