"""Peak memory of one image's analysis per decoded pixel: the number the pixel budget uses.

    python -m loadtests.decode_memory

Each case runs in a fresh process with the server's allocator settings: the real
``FacePipeline.analyse`` (decode, detector input, landmark patches, alignment) over a
stand-in Triton that finds one face, so every pixel stage runs. Reported per case: the
growth of resident memory (the peak, ``VmHWM`` reset just before, over the RSS then) and the peak
that tracemalloc saw (numpy arrays, OpenCV's outputs; not OpenCV's own temporaries), each
divided by the pixels decoded. No network, no Triton.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import psutil

from orchestrator.clients.triton import TritonModels
from orchestrator.pipeline.face_pipeline import DETECTOR, LANDMARKS, FacePipeline
from orchestrator.pipeline.memory_budget import DECODED_BYTES_PER_PIXEL
from orchestrator.pipeline.vision.decode import read_header
from orchestrator.runtime.allocator import keep_freed_memory
from tests.support import augment
from tests.support.photos import fetch_photos

ROOT = Path(__file__).resolve().parent.parent
PRIORS = 4420


class OneFaceTriton:
    """Every image holds one face in its middle; landmarks spread over the box; unit embeddings."""

    async def infer(self, model: str, batch: np.ndarray, version: str = "1") -> dict[str, np.ndarray]:
        n = len(batch)
        if model == DETECTOR:
            scores = np.zeros((n, PRIORS, 2), np.float32)
            scores[:, 0, 1] = 0.99
            boxes = np.zeros((n, PRIORS, 4), np.float32)
            boxes[:, 0] = [0.35, 0.3, 0.65, 0.7]
            return {"scores": scores, "boxes": boxes}
        if model == LANDMARKS:
            grid = np.random.default_rng(0).uniform(0.2, 0.8, (n, 136)).astype(np.float32)
            return {"output": grid}
        return {"output": np.ones((n, 512), np.float32)}


def cases(photos: Path) -> dict[str, bytes]:
    """Stored images, from a real photo and from flat colour (the cheapest to send)."""
    photo = augment.read_rgb((photos / "obama.jpg").read_bytes())

    def resized(width: int, height: int) -> np.ndarray:
        return cv2.resize(photo, (width, height), interpolation=cv2.INTER_LINEAR)

    flat = np.full((6000, 8000, 3), 128, np.uint8)
    rgba16 = np.full((4000, 6000, 4), 30000, np.uint16)
    return {
        "jpeg photo 1600x1200": augment.encode(resized(1600, 1200)),
        "jpeg photo 8000x6000": augment.encode(resized(8000, 6000)),
        "png flat 8000x6000": augment.encode(flat, ".png"),
        "png rgba 16-bit 6000x4000": cv2.imencode(".png", rgba16)[1].tobytes(),
        "webp flat 4000x4000": augment.encode(flat[:4000, :4000], ".webp"),
        "bmp photo 2500x2500": augment.encode(resized(2500, 2500), ".bmp"),
    }


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure_one(path: Path) -> dict[str, Any]:
    """In this (fresh) process: analyse the image once and report its memory."""
    keep_freed_memory()
    cv2.setNumThreads(1)
    data = path.read_bytes()
    header = read_header(data)
    executor = ThreadPoolExecutor(4, thread_name_prefix="pixels")
    pipeline = FacePipeline(cast(TritonModels, OneFaceTriton()), executor=executor)
    small = augment.encode(np.full((240, 320, 3), 100, np.uint8))
    asyncio.run(pipeline.analyse(small))  # warm: imports, thread stacks, OpenCV's first use
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from now
    before = psutil.Process().memory_info().rss
    tracemalloc.start()
    analysis = asyncio.run(pipeline.analyse(data))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = _peak_rss()
    assert analysis.faces and analysis.faces[0].crop is not None
    return {
        "stored_bytes": len(data),
        "decoded": [-(-header.width // header.reduction), -(-header.height // header.reduction)],
        "decoded_pixels": header.decoded_pixels,
        "rss_growth": peak - before,
        "traced_peak": traced_peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one)))
        return

    photos = fetch_photos(args.data_dir / "testdata")
    columns = ("stored MB", "decoded", "MP", "RSS MB", "B/px", "traced B/px")
    widths = (9, 11, 6, 7, 5, 11)
    print(f"{'case':<45} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    worst = 0.0
    with tempfile.TemporaryDirectory() as work:
        for name, data in cases(photos).items():
            path = Path(work) / "image"
            path.write_bytes(data)
            out = subprocess.run(
                [sys.executable, "-m", "loadtests.decode_memory", "--one", str(path)],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=300,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            pixels = row["decoded_pixels"]
            per_pixel = row["rss_growth"] / pixels
            worst = max(worst, per_pixel)
            width, height = row["decoded"]
            print(
                f"{name:<45} {row['stored_bytes'] / 2**20:>9.2f} {f'{width}x{height}':>11} "
                f"{pixels / 1e6:>6.1f} {row['rss_growth'] / 2**20:>7.0f} {per_pixel:>5.1f} "
                f"{row['traced_peak'] / pixels:>11.1f}"
            )
    print(f"worst: {worst:.1f} bytes per decoded pixel; the budget counts {DECODED_BYTES_PER_PIXEL}")


if __name__ == "__main__":
    main()
