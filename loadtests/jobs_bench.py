"""Jobs against ``/v1/recognize`` (issue 14): images/s of one recognize job done by 1 and by 2
``facerec worker`` processes, and of the same images through ``POST /v1/recognize`` at 16
concurrent clients, each as a ratio to the physical limit measured in the same run.

    python -m loadtests.jobs_bench                  # ≈ 4 min on 2 cores
    python -m loadtests.jobs_bench --rounds 2       # every pass twice, the second round reversed

First the physical limit (``loadtests/ceiling.py``: the whole chain in ONNX Runtime, one
single-threaded worker process per core, best batch, on the same images), with the cores to itself. Then a
stack on free loopback ports (Triton, search service, orchestrator, SQLite) with the Redis at
``--redis-url`` as the jobs' broker, which is then the recognition cache too: every pass sends
bytes of its own (the photos with a JPEG comment naming the run, the pass and the image), and
answers marked ``cached`` are counted apart. The passes, each over ``--images`` (500) images
cycled from the load probes (``loadtests/probes.py``):

- ``/v1/recognize`` at ``--clients`` (16) concurrent clients, each sending its next image
  when answered; images/s over first request to last answer;
- a job (``POST /v1/jobs``) per ``--jobs`` entry ``WxC``: W workers running C items at once
  each (default 1x8, 2x8, 1x16), started and warmed by a small job first; images/s over the
  job's ``started_at`` → ``finished_at``, and from the moment its upload began.

Every answer is checked (the expected person as the best match of the largest face), and the
wrong ones printed. Per pass: CPU ms per image of each process, the cores other processes took
meanwhile (another run on the machine makes the figures noisy), Triton's average batch sizes;
for a job also when it was accepted, how busy its workers' slots were and the time per item.
Written to ``loadtests/results/<name>/`` (report.md, results.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from loadtests.ceiling import Ceiling, measure_ceiling
from loadtests.gallery import ensure_gallery
from loadtests.job_passes import (
    Pass,
    busy_seconds,
    job_pass,
    own_seconds,
    recognize_pass,
    redis_pid,
    submit,
    tagged,
    wait_ended,
)
from loadtests.locust_run import RESULTS
from loadtests.probes import Probe, photos_dir, recognition_probes
from loadtests.stack import ADMIN_KEY, Stack, cpu_repository, data_dir
from orchestrator.modelrepo.fetch import fetch_models
from tests.support.stack import Stack as SharedStack

log = logging.getLogger("loadtests.jobs_bench")

BROKER_KEYS = ("unacked", "unacked_index")
NOISY_CORES = 0.2
"""Other processes using more than this many cores during a pass make its figures suspect."""


@dataclass(frozen=True)
class JobShape:
    workers: int
    concurrency: int
    """Items each worker runs at once (``--concurrency``)."""

    @classmethod
    def parse(cls, text: str) -> JobShape:
        workers, concurrency = text.lower().split("x")
        return cls(int(workers), int(concurrency))

    @property
    def key(self) -> str:
        return f"{self.workers}x{self.concurrency}"


def clear_broker(url: str) -> None:
    """No message an earlier run left: it would be a job of a database that is gone."""
    queues = redis.Redis.from_url(url, socket_timeout=5)
    queues.ping()
    for key in [*queues.scan_iter("facerec.jobs.*"), *BROKER_KEYS]:
        queues.delete(key)


def run_job(
    stack: SharedStack,
    watched: Mapping[str, int],
    shape: JobShape,
    probes: Sequence[Probe],
    warm: Sequence[Probe],
) -> Pass:
    workers = [stack.job_worker(f"bench-{shape.key}-{k}", shape.concurrency) for k in range(shape.workers)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
        with stack.client() as client:  # each worker's first items open its connections
            wait_ended(client, submit(client, warm))
        pids = {**watched, **{f"worker-{w.name}": w.pid for w in workers if w.pid}}
        return job_pass(stack, pids, shape.concurrency, probes)
    finally:
        for worker in workers:
            worker.stop()


def _ratio(value: float, ceiling: float) -> str:
    return f"{value / ceiling:.2f}" if ceiling and not math.isnan(value) else "n/a"


def throughput_table(ceiling: Ceiling, passes: Sequence[Pass]) -> list[str]:
    processes, batch = ceiling.best_setting
    lines = [
        "| pass | images/s | × limit | from submit: images/s | × limit | wrong | cached | "
        "latency p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|",
        f"| physical limit: {processes} single-threaded processes, batch {batch} "
        f"| {ceiling.best:.2f} | 1.00 | | | "
        f"{1 - ceiling.correct:.0%} | | {ceiling.single_image_ms:.0f} (batch 1, one process) |",
    ]
    for p in passes:
        if "from_submit_s" in p.figures:
            whole = p.images / p.figures["from_submit_s"]
            rest = f"{whole:.2f} | {_ratio(whole, ceiling.best)} | {len(p.wrong)} | {len(p.cached)} | |"
        else:
            latency = f"{p.figures['p50_ms']:.0f} / {p.figures['p99_ms']:.0f}"
            rest = f"| | {len(p.wrong)} | {len(p.cached)} | {latency} |"
        lines.append(f"| {p.label} | {p.images_per_s:.2f} | {_ratio(p.images_per_s, ceiling.best)} | {rest}")
    return lines


def cost_table(passes: Sequence[Pass]) -> list[str]:
    names = ("triton", "search", "orchestrator", "workers", "redis", "bench")
    lines = [
        "| pass | " + " | ".join(names) + " | all | cores busy | other cores | batch: detector | "
        "landmarks | arcface |",
        "|---|" + "---|" * (len(names) + 6),
    ]
    for p in passes:
        spent = " | ".join(f"{p.cpu_ms[n]:.1f}" if n in p.cpu_ms else "" for n in names)
        total = sum(p.cpu_ms.values())
        batch = " | ".join(
            f"{p.batch.get(m, math.nan):.2f}" for m in ("face_detector", "face_landmarks", "arcface")
        )
        noisy = " (noisy)" if p.foreign_cores > NOISY_CORES else ""
        lines.append(
            f"| {p.label} | {spent} | {total:.1f} | {total * p.images / 1000 / p.window_s:.2f} | "
            f"{p.foreign_cores:.2f}{noisy} | {batch} |"
        )
    return lines


def job_table(passes: Sequence[Pass]) -> list[str]:
    lines = [
        "| job | 202 after s | first item after s | slots held | slots recognising | item p50 ms | "
        "busiest worker's share | retried |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in passes:
        f = p.figures
        if "from_submit_s" in f:
            lines.append(
                f"| {p.label} | {f['accepted_s']:.1f} | {f['first_start_s']:.1f} | {f['slot_use']:.0%} | "
                f"{f['recognising']:.0%} | {f['item_p50_ms']:.0f} | {f['busiest_worker_share']:.0%} | "
                f"{f['retried']:.0f} |"
            )
    return lines


def report(ceiling: Ceiling, passes: Sequence[Pass], header: list[str]) -> list[str]:
    lines = [*header, "", "## Images/s", "", *throughput_table(ceiling, passes), ""]
    lines += ["## CPU ms per image, by process", "", *cost_table(passes), ""]
    lines += ["## Jobs", "", *job_table(passes), ""]
    for p in passes:
        if p.wrong:
            lines += [f"Wrong in {p.label} ({len(p.wrong)}):", *(f"- {w}" for w in p.wrong[:20]), ""]
        if p.cached:
            lines += [f"From the cache in {p.label}: {', '.join(p.cached[:20])}", ""]
    return lines


def served_passes(
    args: argparse.Namespace,
    photos: Path,
    base: Sequence[Probe],
    shapes: Sequence[JobShape],
    run: str,
    out: Path,
) -> list[Pass]:
    """Every pass on one stack, each with images of its own; odd rounds in reverse order, so
    that a drift in the machine's speed does not always favour the same pass. The services'
    logs are kept in ``out`` when an answer was wrong or cached, or an item retried."""
    passes: list[Pass] = []
    with (
        tempfile.TemporaryDirectory(prefix="facerec-jobs-") as work,
        Stack(Path(work), cpu_repository(), redis_url=args.redis_url) as stack,
    ):
        ensure_gallery(stack.url, ADMIN_KEY, photos)
        watched = {**stack.pids(), **redis_pid(args.redis_url)}
        warm = recognize_pass(stack, watched, tagged(base, 64, f"{run}-warm"), args.clients)
        if warm.wrong:
            raise RuntimeError(f"the stack answers wrongly before any measure: {warm.wrong[:5]}")
        steps: list[JobShape | None] = [None, *shapes]  # None: /v1/recognize
        for round_ in range(args.rounds):
            for shape in steps if round_ % 2 == 0 else steps[::-1]:
                tag = f"{run}-{round_}-{shape.key if shape else 'rest'}"
                probes = tagged(base, args.images, tag)
                if shape is None:
                    done = recognize_pass(stack, watched, probes, args.clients)
                else:
                    warm_job = tagged(base, 2 * shape.workers * shape.concurrency, f"{tag}-warm")
                    done = run_job(stack, watched, shape, probes, warm_job)
                if args.rounds > 1:
                    done.label += f" (round {round_ + 1})"
                log.info("%s: %.2f images/s, %d wrong", done.label, done.images_per_s, len(done.wrong))
                passes.append(done)
        if any(p.wrong or p.cached or p.figures.get("retried") for p in passes):
            shutil.copytree(Path(work) / "logs", out / "logs", dirs_exist_ok=True)
    return passes


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16, help="concurrent /v1/recognize clients")
    parser.add_argument("--jobs", default="1x8,2x8,1x16", help="WxC: W workers, C items at once each")
    parser.add_argument("--rounds", type=int, default=1, help="every pass this many times")
    parser.add_argument(
        "--ceiling-seconds", type=float, default=8.0, help="per setting of the physical limit (4)"
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/13", help="the broker (a db of its own)"
    )
    parser.add_argument("--name", default=time.strftime("jobs-%Y%m%d-%H%M%S"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    shapes = [JobShape.parse(s) for s in args.jobs.split(",") if s]
    fetch_models(data_dir() / "models")
    photos = photos_dir()
    base = recognition_probes(photos)
    clear_broker(args.redis_url)
    run = secrets.token_hex(4)  # bytes no earlier run sent: the cache outlives runs
    header = [
        f"# Jobs vs /v1/recognize: {args.name}",
        "",
        f"{args.images} images ({len(base)} load probes cycled, each with bytes of its own), "
        f"{os.cpu_count()} cores, orchestrator workers {os.environ.get('FACEREC_API__WORKERS', 'default')}, "
        f"SQLite, Redis {args.redis_url} (broker and cache; no answer may come from it).",
        f"Load average at the start: {load_average()}.",
    ]
    log.info("measuring the physical limit")
    busy, own, started = busy_seconds(), own_seconds(), time.monotonic()
    ceiling = measure_ceiling(
        cpu_repository(), photos, tagged(base, args.images, "ceiling"), seconds=args.ceiling_seconds
    )
    other = (busy_seconds() - busy - (own_seconds() - own)) / (time.monotonic() - started)
    noisy = " (noisy)" if other > NOISY_CORES else ""
    header.append(f"Other processes took {other:.2f} cores while the physical limit was measured{noisy}.")
    log.info("ceiling %.2f images/s at %s", ceiling.best, ceiling.best_setting)
    out = RESULTS / args.name
    passes = served_passes(args, photos, base, shapes, run, out)
    header.append(f"Load average at the end: {load_average()}.")
    lines = report(ceiling, passes, header)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    results = {
        "ceiling": {f"{t}x{b}": rate for (t, b), rate in ceiling.images_per_s.items()},
        "ceiling_correct": ceiling.correct,
        "passes": [dataclasses.asdict(p) for p in passes],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
