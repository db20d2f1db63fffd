"""The raw ceiling: recognitions per second of the whole chain in one process, best arrangement.

Every image goes through decode → detect → landmarks → align → embed (``OrtChain``) and
a numpy top-k over the same gallery the stack serves. Two knobs, and the best setting is
the ceiling that every served figure is divided by:

- images per batch: each model runs once per batch (the embedder sees batch N);
- worker threads: decode, resize and warp are OpenCV calls that release the GIL, so with
  several threads the pixel work of one batch overlaps the inference of another, as it
  does across processes in the served stack. One thread alone would understate the ceiling.

The process runs with the served processes' allocator settings, and with several workers
OpenCV runs single-threaded as in the orchestrator: the ceiling must not lose to the stack
for want of a setting the stack has.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from loadtests.chain import GalleryMatrix, OrtChain, build_gallery
from loadtests.probes import GALLERY, Probe
from orchestrator.runtime.allocator import keep_freed_memory

TOP_K = 5


@dataclass(frozen=True)
class Ceiling:
    images_per_s: dict[tuple[int, int], float]
    """(worker threads, images per batch) → images/s."""
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
        """One image at a time, one thread: the least latency the chain can have here."""
        return 1000.0 / self.images_per_s[min(self.images_per_s)]


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.images = self.right = self.total = 0


def _work(
    chain: OrtChain,
    gallery: GalleryMatrix,
    stream: itertools.cycle[Probe],
    batch: int,
    deadline: float,
    threshold: float,
    counter: _Counter,
) -> None:
    while time.perf_counter() < deadline:
        with counter.lock:
            chunk = [next(stream) for _ in range(batch)]
        faces = chain.analyse([p.data for p in chunk])
        right = total = 0
        for probe, found in zip(chunk, faces, strict=True):
            total += 1
            vectors = [f.embedding for f in found if f.embedding is not None]
            if vectors:
                row, score = gallery.top_k(np.stack(vectors), TOP_K)[0][0]
                right += int(score >= threshold and gallery.names[row] == probe.expected)
        with counter.lock:
            counter.images += batch
            counter.right += right
            counter.total += total


def measure_ceiling(
    repository: Path,
    photos: Path,
    probes: list[Probe],
    batch_sizes: tuple[int, ...] = (1, 4, 8, 16),
    seconds: float = 10.0,
    workers: tuple[int, ...] = (1, 2, 4),
    threshold: float = 0.38,
) -> Ceiling:
    keep_freed_memory()  # as the served processes run: see orchestrator.runtime.allocator
    default_cv2_threads = cv2.getNumThreads()
    chain = OrtChain(repository)
    enrolled = [
        (i, person.name, (photos / name).read_bytes())
        for i, person in enumerate(GALLERY, start=1)
        for name in person.enrol_from
    ]
    gallery = build_gallery(chain, enrolled)
    rates: dict[tuple[int, int], float] = {}
    right = total = 0
    for threads in workers:
        # Several workers already fill the cores; OpenCV's own pool would only compete (as
        # in the orchestrator). One worker gets OpenCV's threads.
        cv2.setNumThreads(1 if threads > 1 else default_cv2_threads)
        for batch in batch_sizes:
            stream = itertools.cycle(probes)
            chain.analyse([next(stream).data for _ in range(batch)])  # warm-up at this shape
            counter = _Counter()
            started = time.perf_counter()
            deadline = started + seconds
            with ThreadPoolExecutor(threads) as pool:
                for future in [
                    pool.submit(_work, chain, gallery, stream, batch, deadline, threshold, counter)
                    for _ in range(threads)
                ]:
                    future.result()
            rates[(threads, batch)] = counter.images / (time.perf_counter() - started)
            right += counter.right
            total += counter.total
    return Ceiling(images_per_s=rates, correct=right / total if total else float("nan"))
