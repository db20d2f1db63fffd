"""The performance report: recognition throughput and latency vs concurrency, as ratios to a ceiling.

One run measures, on the same cores:

(a) the physical limit: the whole chain in ONNX Runtime, one single-threaded worker process
    per core, no HTTP and no IPC (``loadtests.ceiling``); its best setting again between
    steps, and each step's ratio is to the mean of the two measured on either side of it;
(b) the naive baseline: a plain FastAPI app running the models per request (no Triton);
(c) the real stack with Triton's dynamic batching off;
(d) the real stack as shipped (dynamic batching on).

(b)-(d) run side by side and get the same Locust recognition scenario at each concurrency,
interleaved (every variant at one concurrency before the next, in alternating order), so a
drift in the machine's speed hits them alike; Triton's statistics and each process's CPU
time are sampled around every step. It writes ``loadtests/results/<name>/report.md``, PNG plots,
``results.json`` and the Locust CSVs. Nothing else may run on the machine meanwhile.

    python -m loadtests.report --name full            # ≈ 20 min on 2 cores (18 steps of 45 s)
    python -m loadtests.report --name smoke --step-seconds 10 --ceiling-seconds 3   # ≈ 4 min
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtests import triton_stats
from loadtests.ceiling import measure_ceiling
from loadtests.cpu_usage import cpu_seconds, per_request_ms
from loadtests.gallery import ensure_gallery
from loadtests.locust_run import RESULTS, run_locust
from loadtests.probes import Probe, check_recognition, photos_dir, recognition_probes
from loadtests.report_md import Step, ratio, write_report
from loadtests.stack import ADMIN_KEY, NaiveServer, Stack, cpu_repository, write_unbatched_repository
from orchestrator.modelrepo.tuning import ensure_tuned
from orchestrator.runtime.triton_server import TritonServer

log = logging.getLogger("loadtests.report")

VARIANTS = ("triton", "triton-unbatched", "naive")
REPORT_MODELS = ("face_chain", "face_detector", "face_landmarks", "arcface")


def warm_up(url: str, probes: Sequence[Probe], rounds: int = 1) -> None:
    """Every probe once, sequentially, answers checked: a wrong set-up fails before any load."""
    with httpx.Client(base_url=url, headers={"X-API-Key": ADMIN_KEY}, timeout=120.0) as client:
        for _ in range(rounds):
            for probe in probes:
                response = client.post("/v1/recognize", files={"file": ("probe.jpg", probe.data)})
                response.raise_for_status()
                try:
                    check_recognition(response.json(), probe.expected)
                except AssertionError as error:
                    raise RuntimeError(f"{url}: probe {probe.label}: {error}") from error


@dataclass(frozen=True)
class Target:
    """One variant, up and warm: where to send load and what to watch."""

    variant: str
    url: str
    env: dict[str, str]
    triton_http: str | None
    pids: dict[str, int]


@dataclass(frozen=True)
class LimitBeside:
    """The limit's best setting, measured again between steps (0 s: not measured)."""

    repository: Path
    photos: Path
    probes: Sequence[Probe]
    processes: int
    batch: int
    seconds: float

    def measure(self) -> float:
        if self.seconds <= 0:
            return math.nan
        again = measure_ceiling(
            self.repository,
            self.photos,
            list(self.probes),
            (self.batch,),
            self.seconds,
            processes=(self.processes,),
        )
        return again.best


def _step(target: Target, users: int, step_s: float, out: Path) -> Step:
    before = triton_stats.sample(target.triton_http) if target.triton_http else {}
    cpu_before = cpu_seconds(target.pids)
    summary = run_locust(
        "recognise",
        target.url,
        out / "locust" / f"{target.variant}-u{users}",
        users=users,
        run_time_s=step_s,
        env=target.env,
        html=False,
    )
    cpu = per_request_ms(cpu_before, cpu_seconds(target.pids), summary.requests)
    after = triton_stats.sample(target.triton_http) if target.triton_http else {}
    batching = {
        model: (s.average_batch, s.queue_ms)
        for model, s in triton_stats.between(before, after).items()
        if model in REPORT_MODELS
    }
    step = Step(
        target.variant,
        users,
        step_s,
        summary.requests,
        summary.failures,
        summary.throughput,
        summary.p50_ms,
        summary.p95_ms,
        summary.p99_ms,
        batching,
        cpu,
        1000 * summary.cpu_s / summary.requests if summary.requests else math.nan,
    )
    log.info(
        "%s u=%d: %.2f req/s p50 %.0f ms, %d/%d failed, %s, CPU ms/request %s",
        target.variant,
        users,
        step.throughput,
        step.p50_ms,
        step.failures,
        step.requests,
        batching,
        {k: round(v, 1) for k, v in cpu.items()},
    )
    return step


def interleaved(targets: Sequence[Target], users: Sequence[int]) -> list[tuple[Target, int]]:
    """Every variant at each concurrency before the next one, in alternating order.

    A shared machine's speed drifts over minutes; measured side by side, each variant sees
    the same drift, and alternating the order cancels a steady trend within a pair of steps.
    """
    order: list[tuple[Target, int]] = []
    for i, n in enumerate(users):
        order += [(t, n) for t in (targets if i % 2 == 0 else list(reversed(targets)))]
    return order


def run_report(
    name: str,
    users: Sequence[int] = (1, 2, 4, 8, 16, 32),
    step_s: float = 45.0,
    ceiling_s: float = 8.0,
    variants: Sequence[str] = VARIANTS,
    results: Path = RESULTS,
    progress: Callable[[str], None] = log.info,
    ceiling_batches: tuple[int, ...] = (1, 8),
    triton: TritonServer | None = None,
    beside_s: float = 10.0,
) -> Path:
    """Measure and write ``results/<name>/``; ``triton``: an already running server for "triton";
    ``beside_s``: seconds of the limit's best setting measured again between steps."""
    started = time.monotonic()
    out = results / name
    out.mkdir(parents=True, exist_ok=True)
    photos = photos_dir()
    probes = recognition_probes(photos)
    repository = cpu_repository()
    # The limit and the stack both run the models as tuned for this CPU (as `facerec up` does).
    ensure_tuned(repository.parent.parent, progress=progress)
    progress("measuring the physical limit")
    ceiling = measure_ceiling(repository, photos, probes, ceiling_batches, ceiling_s)
    processes, batch = ceiling.best_setting
    progress(f"physical limit {ceiling.best:.2f} images/s ({processes} processes, batch {batch})")
    beside = LimitBeside(repository, photos, probes, processes, batch, beside_s)
    steps: list[Step] = []
    env = {"FACEREC_ADMIN_KEY": ADMIN_KEY}
    with tempfile.TemporaryDirectory(prefix="facerec-report-") as tmp, contextlib.ExitStack() as up:
        root = Path(tmp)
        targets = []
        for variant in variants:  # all up at once: idle, the others cost next to nothing
            progress(f"starting {variant}")
            if variant == "naive":
                naive = up.enter_context(NaiveServer(root / "naive", repository, photos))
                warm_up(naive.url, probes)
                naive_env = {**env, "FACEREC_LOAD_GALLERY": "none"}
                targets.append(Target(variant, naive.url, naive_env, None, naive.pids()))
                continue
            repo = repository
            if variant == "triton-unbatched":
                repo = write_unbatched_repository(repository, root / "repository-unbatched")
            stack = up.enter_context(
                Stack(root / variant, repo, triton=triton if variant == "triton" else None)
            )
            ensure_gallery(stack.url, ADMIN_KEY, photos)
            warm_up(stack.url, probes)
            targets.append(Target(variant, stack.url, env, stack.triton.http_url, stack.pids()))
        limit_before = beside.measure()  # here, not before the stacks started: beside the first step
        for target, n in interleaved(targets, users):
            step = _step(target, n, step_s, out)
            limit_after = beside.measure()
            # The limit on either side of the step: a drift during it counts half from each.
            step = dataclasses.replace(step, limit=(limit_before + limit_after) / 2)
            progress(f"{target.variant} u={n}: {ratio(step, ceiling):.2f} × the limit ({step.limit:.2f}/s)")
            steps.append(step)
            limit_before = limit_after
    steps.sort(key=lambda s: (variants.index(s.variant), s.users))
    elapsed = time.monotonic() - started
    write_report(out, name, ceiling, steps, elapsed, users, step_s)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="performance report as ratios to the physical limit")
    parser.add_argument("--name", default=time.strftime("report-%Y%m%d-%H%M%S"))
    parser.add_argument("--users", default="1,2,4,8,16,32", help="concurrency steps, comma-separated")
    parser.add_argument("--step-seconds", type=float, default=45.0)
    parser.add_argument(
        "--ceiling-seconds", type=float, default=8.0, help="per setting of the physical limit (4 settings)"
    )
    parser.add_argument(
        "--beside-seconds",
        type=float,
        default=10.0,
        help="the limit's best setting measured again between steps, the ratios' base (0: not)",
    )
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    out = run_report(
        args.name,
        [int(n) for n in args.users.split(",")],
        args.step_seconds,
        args.ceiling_seconds,
        [v for v in args.variants.split(",") if v],
        args.results,
        beside_s=args.beside_seconds,
    )
    print((out / "report.md").read_text())
    print(f"report written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
