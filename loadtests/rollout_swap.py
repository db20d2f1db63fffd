"""Measure a model rollout under recognition load: failures, latency before vs during, duration.

    python -m loadtests.rollout_swap --faces 1000 --clients 8

Starts a real Triton, search service and orchestrator on free ports, fills a gallery of
``--faces`` faces (distinct perturbations of aligned crops of the real test photos, written
through the gallery so the set-up takes seconds, then indexed by the start-up
reconciliation), runs recognition traffic, switches to the rotated version (a different
embedding space, so the whole gallery is re-embedded) and writes a markdown report.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from orchestrator.clients.triton import TritonModels
from orchestrator.db import Gallery, make_engine, migrate
from orchestrator.db.tables import PersonCreate
from orchestrator.gallery.enrolment import crop_png
from orchestrator.modelrepo.catalog import SERVED_MODELS
from orchestrator.modelrepo.fetch import fetch_models
from orchestrator.modelrepo.importer import derive
from orchestrator.pipeline.face_pipeline import FacePipeline
from orchestrator.runtime.triton_env import ensure_environment
from orchestrator.runtime.triton_server import TritonPorts, TritonServer
from tests.support import augment
from tests.support.photos import fetch_photos
from tests.support.rollout_traffic import follow_rollout, recognition_traffic
from tests.support.stack import ADMIN_KEY, Stack, sqlite_url

ROOT = Path(__file__).resolve().parent.parent
PEOPLE = {"Barack Obama": ["obama.jpg", "obama2.jpg"], "Joe Biden": ["biden.jpg"]}
PROBES = {"Barack Obama": "obama3.jpg", "Joe Biden": "biden.jpg"}


def perturb(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A distinct but same-identity crop: brightness, contrast and pixel noise."""
    gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-12, 12)
    noisy = crop.astype(np.float32) * gain + bias + rng.normal(0, 2.0, crop.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


async def fill_gallery(gallery: Gallery, triton_url: str, photos: Path, faces: int) -> None:
    rng = np.random.default_rng(0)
    async with TritonModels(triton_url, timeout_s=60) as triton:
        pipeline = FacePipeline(triton)
        bases: list[tuple[int, np.ndarray]] = []
        for name, files in PEOPLE.items():
            person = gallery.create_person(PersonCreate(name=name))
            for file in files:
                data = (photos / file).read_bytes()
                for variant in (data, augment.scaled(data, 0.6), augment.reencoded(data, 40)):
                    crop = (await pipeline.analyse(variant)).faces[0].crop
                    assert crop is not None
                    bases.append((person.id, crop))
        for start in range(0, faces, 64):
            batch = [bases[(start + i) % len(bases)] for i in range(min(64, faces - start))]
            crops = np.stack([perturb(crop, rng) for _, crop in batch])
            vectors = await pipeline.embed_crops(crops, "1")
            for (person_id, _), crop, vector in zip(batch, crops, vectors, strict=True):
                png = crop_png(crop)
                gallery.add_face(
                    person_id,
                    embedding=vector,
                    model_version="1",
                    crop_png=png,
                    image_sha256=hashlib.sha256(png).hexdigest(),
                    quality=1.0,
                    det_score=1.0,
                    box=[0.0, 0.0, 112.0, 112.0],
                )


async def measure(
    url: str, photos: Path, version: str, clients: int, before_s: float, key: str = ADMIN_KEY
) -> dict[str, Any]:
    """Recognition traffic from ``clients`` callers on the API at ``url``, and a rollout to ``version``."""
    probes = [(name, (photos / file).read_bytes()) for name, file in PROBES.items()]
    probes += [(name, augment.reencoded(data, 70)) for name, data in probes]
    records: list[dict[str, Any]] = []
    stop = asyncio.Event()
    workers = [
        asyncio.create_task(recognition_traffic(url, probes[i:] + probes[:i], stop, records, key))
        for i in range(clients)
    ]
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=60) as admin:
        await asyncio.sleep(before_s)
        started = time.perf_counter()
        rollout, timeline = await follow_rollout(admin, "/v1/models/rollouts", {"version": version})
        finished = time.perf_counter()
        await asyncio.sleep(3)
    stop.set()
    await asyncio.gather(*workers)
    return {
        "records": records,
        "started": started,
        "finished": finished,
        "rollout": rollout,
        "timeline": timeline,
    }


def report(result: dict[str, Any], faces: int, clients: int) -> str:
    records = result["records"]
    before = [r for r in records if r["at"] < result["started"]]
    during = [r for r in records if result["started"] <= r["at"] <= result["finished"]]

    def pct(rows: list[dict[str, Any]], q: float) -> float:
        return float(np.percentile([r["ms"] for r in rows], q)) if rows else float("nan")

    def row(label: str, rows: list[dict[str, Any]]) -> str:
        served = [r for r in rows if r["status"] == 200]
        failed = len(rows) - len(served)
        wrong = sum(r["name"] != r["expected"] for r in served)
        return f"| {label} | {len(rows)} | {failed} | {wrong} | {pct(rows, 50):.0f} | {pct(rows, 99):.0f} |"

    lines = [
        f"# Rollout under load — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Gallery {faces} faces; {clients} concurrent recognition clients; switch version "
        f"{result['rollout']['from_version']} → {result['rollout']['to_version']} "
        f"({result['rollout']['state']}, took {result['finished'] - result['started']:.1f} s).",
        "",
        "| | requests | failed | wrong person | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
        row("before the swap", before),
        row("during the swap", during),
        row("whole run", records),
        "",
        "Timeline (state, seconds after the request): "
        + ", ".join(f"{state} {at}" for state, at in result["timeline"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--before", type=float, default=15.0, help="seconds of traffic before the swap")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtests" / "results" / "rollout.md")
    args = parser.parse_args()

    store = fetch_models(args.data_dir / "models")
    version = str(derive(store, "rotated"))
    photos = fetch_photos(args.data_dir / "testdata")
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        triton = TritonServer(
            ensure_environment(args.data_dir / "triton-env"),
            store.repository("cpu"),
            root / "triton.log",
            TritonPorts.free(),
            list(SERVED_MODELS),
        )
        with triton:
            engine = make_engine(sqlite_url(root))
            migrate(engine)
            asyncio.run(fill_gallery(Gallery(engine), triton.grpc_url, photos, args.faces))
            engine.dispose()
            stack = Stack(
                root,
                triton,
                sqlite_url(root),
                None,
                api_env={"FACEREC_TRITON__METRICS_URL": triton.metrics_url},
            )
            stack.start()
            try:
                result = asyncio.run(measure(stack.api.url, photos, version, args.clients, args.before))
            finally:
                stack.stop()
    text = report(result, args.faces, args.clients)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
