"""The physical limit: recognitions per second of the whole chain with nothing else in the way.

One worker process per core, each single-threaded (ONNX Runtime one intra-op thread,
OpenCV one thread), each running decode → detect → landmarks → align → embed
(``OrtChain``) and a numpy top-k over the same gallery the stack serves, on the same
probes, with no HTTP and no IPC. The graph optimisation level of each model is the one in
the CPU repository's config, which ``facerec models tune`` measured best on this CPU.

Two knobs: images per batch (each model runs once per batch) and the number of processes
(1, and one per core). The best is the limit every served figure is divided by; one
process at batch 1 gives the least latency an image can have here.

The processes run with the served processes' allocator settings: the limit must not lose
to the stack for want of a setting the stack has.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from loadtests.chain import OrtChain, build_gallery
from loadtests.probes import GALLERY, Probe
from orchestrator.modelrepo.tuning import cores
from orchestrator.runtime.allocator import keep_freed_memory

TOP_K = 5


@dataclass(frozen=True)
class Ceiling:
    images_per_s: dict[tuple[int, int], float]
    """(worker processes, images per batch) → images/s."""
    correct: float
    """Fraction of images whose largest face got the expected person (a sanity check)."""

    @property
    def best_setting(self) -> tuple[int, int]:
        return max(self.images_per_s, key=lambda k: self.images_per_s[k])

    @property
    def best(self) -> float:
        return self.images_per_s[self.best_setting]

    @property
    def single_image_ms(self) -> float:
        """One image at a time in one process: the least latency the chain can have here."""
        return 1000.0 / self.images_per_s[min(self.images_per_s)]


def _worker(
    index: int,
    repository: Path,
    photos: Path,
    probes: list[Probe],
    batch_sizes: tuple[int, ...],
    seconds: float,
    threshold: float,
    start: Any,
    results: Any,
) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    keep_freed_memory()  # as the served processes run: see orchestrator.runtime.allocator
    cv2.setNumThreads(1)
    chain = OrtChain(repository, threads=1)
    enrolled = [
        (i, person.name, (photos / name).read_bytes())
        for i, person in enumerate(GALLERY, start=1)
        for name in person.enrol_from
    ]
    gallery = build_gallery(chain, enrolled)
    # Each process starts at its own place in the probes, so they do not decode in lockstep.
    stream = itertools.islice(itertools.cycle(probes), index * 7, None)
    for batch in batch_sizes:
        chain.analyse([next(stream).data for _ in range(batch)])  # warm-up at this shape
        start.wait()
        images = right = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            chunk = [next(stream) for _ in range(batch)]
            for probe, found in zip(chunk, chain.analyse([p.data for p in chunk]), strict=True):
                vectors = [f.embedding for f in found if f.embedding is not None]
                if vectors:
                    row, score = gallery.top_k(np.stack(vectors), TOP_K)[0][0]
                    right += int(score >= threshold and gallery.names[row] == probe.expected)
            images += batch
        results.put((batch, images / elapsed, right, images))


def _result(results: Any, workers: list[Any]) -> tuple[int, float, int, int]:
    """The next worker's result; a worker that died fails the measurement rather than hang it."""
    while True:
        try:
            batch, rate, right, images = results.get(timeout=2.0)
            return batch, rate, right, images
        except queue.Empty:
            dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a worker of the physical limit died (exit {dead[0]})") from None


def measure_ceiling(
    repository: Path,
    photos: Path,
    probes: list[Probe],
    batch_sizes: tuple[int, ...] = (1, 8),
    seconds: float = 10.0,
    processes: tuple[int, ...] | None = None,
    threshold: float = 0.38,
) -> Ceiling:
    """``processes``: the worker counts to measure, by default 1 and one per core."""
    context = multiprocessing.get_context("spawn")  # no state of this process is shared
    rates: dict[tuple[int, int], float] = {}
    right = total = 0
    for count in processes or tuple(sorted({1, cores()})):
        start, results = context.Barrier(count), context.Queue()
        workers = [
            context.Process(
                target=_worker,
                args=(i, repository, photos, probes, batch_sizes, seconds, threshold, start, results),
            )
            for i in range(count)
        ]
        for worker in workers:
            worker.start()
        try:
            for _ in range(count * len(batch_sizes)):
                batch, rate, worker_right, worker_images = _result(results, workers)
                rates[(count, batch)] = rates.get((count, batch), 0.0) + rate
                right += worker_right
                total += worker_images
        finally:
            for worker in workers:
                worker.join(60)
                if worker.is_alive():
                    worker.kill()
    return Ceiling(images_per_s=dict(sorted(rates.items())), correct=right / total if total else float("nan"))
