"""The steps of ``make gpu-check``, each turning a part of the GPU stack into markdown figures.

A step gets the :class:`Check` (what is served, where the models, photos and results are)
and returns its markdown; it raises :class:`StepFailure` with its markdown when it measured
something that did not pass. ``run_step`` times it and keeps any other error as the step's
result, so that one breakage does not cost the other steps' figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnx

from loadtests import fp16_drift, gpu_search, perf_analyzer, rollout_swap
from loadtests.gallery import ensure_gallery
from loadtests.gpu_serving import Serving
from loadtests.probes import check_recognition, recognition_probes
from orchestrator.clients.triton import TritonModels
from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.modelrepo.fetch import fetch_models
from orchestrator.modelrepo.importer import derive
from orchestrator.pipeline.calibration import DEFAULT_MATCH_THRESHOLD
from orchestrator.pipeline.face_pipeline import FacePipeline

log = logging.getLogger(__name__)

STEPS = ("drift", "flow", "perf", "rollout", "search")


class StepFailure(Exception):
    """A step that measured something but did not pass; its markdown still goes in the report."""


@dataclass(frozen=True)
class Check:
    serving: Serving
    data_dir: Path
    photos: Path
    out: Path
    args: argparse.Namespace

    @property
    def repository(self) -> Path:
        return self.data_dir / "models" / "repository" / "gpu"

    def client(self) -> httpx.Client:
        headers = {"X-API-Key": self.serving.admin_key}
        return httpx.Client(base_url=self.serving.api_url, headers=headers, timeout=600.0)


@dataclass(frozen=True)
class Section:
    title: str
    body: str
    seconds: float
    failed: bool = False


def active_version(check: Check) -> str:
    with check.client() as client:
        answer = client.get("/v1/models")
        answer.raise_for_status()
        return str(answer.json()["active"]["version"])


def drift_step(check: Check) -> str:
    version = active_version(check)
    crops, labels = fp16_drift.aligned_crops(check.photos, check.repository)

    async def on_triton() -> np.ndarray:
        # Long timeout: a batch size not built yet costs a TensorRT engine build (minutes).
        async with TritonModels(check.serving.triton_url, timeout_s=900.0) as triton:
            return await FacePipeline(triton).embed_crops(crops, version)

    fp32 = fp16_drift.embed(onnx.load(str(check.repository / ARCFACE.name / version / "model.onnx")), crops)
    runs = {f"Triton GPU, arcface v{version}": asyncio.run(on_triton())}
    body = fp16_drift.report(fp32, runs, labels, DEFAULT_MATCH_THRESHOLD)
    if fp16_drift.NEEDS_GPU_VARIANT in body:
        raise StepFailure(body)
    return body


def flow_step(check: Check) -> str:
    ensure_gallery(check.serving.api_url, check.serving.admin_key, check.photos, timeout_s=900.0)
    rows, right, times = [], 0, []
    with check.client() as client:
        for probe in recognition_probes(check.photos):
            started = time.perf_counter()
            response = client.post("/v1/recognize", files={"file": ("probe.jpg", probe.data)})
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                rows.append(
                    f"| {probe.label} | {probe.expected} | {response.status_code} | | {times[-1]:.0f} | |"
                )
                continue
            answer = response.json()
            faces = answer["faces"]
            best = faces[0]["matches"][0] if faces and faces[0]["matches"] else {"name": "—", "similarity": 0}
            with contextlib.suppress(AssertionError):  # a wrong or missing name: counted as not right
                check_recognition(answer, probe.expected)
                right += 1
            rows.append(
                f"| {probe.label} | {probe.expected} | {best['name']} | {best['similarity']:.3f} "
                f"| {times[-1]:.0f} | {answer['cached']} |"
            )
    body = "\n".join(
        [
            f"{right} of {len(rows)} held-out probes named right, one at a time; "
            f"p50 {statistics.median(times):.0f} ms, max {max(times):.0f} ms.",
            "",
            "| probe | expected | best match | similarity | ms | cached |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    if right < len(rows):
        raise StepFailure(body)
    return body + "\n"


def perf_step(check: Check) -> str:
    runs = perf_analyzer.run_all(
        check.args.perf_analyzer,
        check.serving.triton_url,
        check.repository,
        check.out / "perf_analyzer",
        check.args.batches,
        check.args.concurrency,
    )
    body = perf_analyzer.table(runs)
    if any(run.error for run in runs):
        raise StepFailure(body)
    return body


def rollout_step(check: Check) -> str:
    rotated = str(derive(fetch_models(check.data_dir / "models"), "rotated"))
    target = "1" if active_version(check) == rotated else rotated
    ensure_gallery(check.serving.api_url, check.serving.admin_key, check.photos, timeout_s=900.0)
    with check.client() as client:
        people = client.get("/v1/people", params={"limit": 500}).json()["items"]
    result = asyncio.run(
        rollout_swap.measure(
            check.serving.api_url,
            check.photos,
            target,
            check.args.rollout_clients,
            15.0,
            check.serving.admin_key,
        )
    )
    text = rollout_swap.report(result, sum(p["face_count"] for p in people), check.args.rollout_clients)
    body = "\n".join(line for line in text.splitlines() if not line.startswith("# ")).strip() + "\n"
    if result["rollout"]["state"] != "done":
        raise StepFailure(body + f"\nRollout {result['rollout']['state']}: {result['rollout']['error']}\n")
    return body


def search_step(check: Check) -> str:
    args = check.args
    return gpu_search.report(args.search_n, args.search_dim, args.search_kinds, budget_s=10.0)


STEP_RUNNERS: dict[str, tuple[str, Callable[[Check], str]]] = {
    "drift": ("FP16 drift: Triton on the GPU against ONNX Runtime FP32", drift_step),
    "flow": ("Held-out recognition through the API", flow_step),
    "perf": ("perf_analyzer, every model, batch 1–64", perf_step),
    "rollout": ("A rollout under recognition traffic", rollout_step),
    "search": ("Search service on the GPU against raw faiss on the GPU", search_step),
}


def run_step(name: str, check: Check) -> Section:
    title, runner = STEP_RUNNERS[name]
    log.info("gpu-check: %s", title)
    started = time.perf_counter()
    try:
        body, failed = runner(check), False
    except StepFailure as failure:
        body, failed = str(failure), True
    except Exception as error:  # one step's breakage must not cost the others' figures
        log.exception("gpu-check: %s failed", name)
        body, failed = f"Failed: `{type(error).__name__}: {error}`\n", True
    return Section(title, body, time.perf_counter() - started, failed)
