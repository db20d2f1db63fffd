"""The report's markdown, JSON and plots, written from the measured physical limit and steps."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loadtests import plots
from loadtests.ceiling import Ceiling

LABELS = {
    "triton": "stack, Triton dynamic batching",
    "triton-unbatched": "stack, Triton batching off",
    "naive": "naive FastAPI + ONNX Runtime",
}


@dataclass
class Step:
    variant: str
    users: int
    seconds: float
    requests: int
    failures: int
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    batching: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Triton model → (average batch size, queue ms per request) during the step."""
    cpu_ms: dict[str, float] = field(default_factory=dict)
    """Process (with its children) → CPU ms per request during the step."""
    load_cpu_ms: float = math.nan
    """Locust's own CPU ms per request: not the stack's, but taken from the same cores."""
    limit: float = math.nan
    """The limit's best setting, the mean of its measurements just before and just after this
    step (images/s): the step's ratio is to it, so that the machine's drift between minutes
    cancels."""


def limit_of(step: Step, ceiling: Ceiling) -> float:
    """The limit a step is compared with: the one measured beside it, else the run's."""
    return step.limit if math.isfinite(step.limit) and step.limit > 0 else ceiling.best


def ratio(step: Step, ceiling: Ceiling) -> float:
    return step.throughput / limit_of(step, ceiling)


def _fmt(value: float, digits: int = 1) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def table(steps: Sequence[Step], ceiling: Ceiling) -> str:
    single_ms = ceiling.single_image_ms
    one_user = {s.variant: s.p50_ms for s in steps if s.users == 1}
    lines = [
        "| variant | users | req/s | limit beside | × limit | p50 ms | p95 ms | p99 ms "
        "| p50 ÷ limit image time | p99 ÷ 1-user p50 | users ÷ req/s ms | failed | arcface batch "
        "| arcface queue ms | face_chain batch | face_chain queue ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        arcface = s.batching.get("arcface", (math.nan, math.nan))
        chain = s.batching.get("face_chain", (math.nan, math.nan))
        lines.append(
            f"| {s.variant} | {s.users} | {_fmt(s.throughput, 2)} | {_fmt(limit_of(s, ceiling), 2)} "
            f"| {_fmt(ratio(s, ceiling), 2)} "
            f"| {_fmt(s.p50_ms, 0)} | {_fmt(s.p95_ms, 0)} | {_fmt(s.p99_ms, 0)} "
            f"| {_fmt(s.p50_ms / single_ms, 1)} | {_fmt(s.p99_ms / one_user.get(s.variant, math.nan), 1)} "
            f"| {_fmt(1000 * s.users / s.throughput if s.throughput else math.nan, 0)} "
            f"| {s.failures}/{s.requests} | {_fmt(arcface[0], 2)} | {_fmt(arcface[1], 1)} "
            f"| {_fmt(chain[0], 2)} | {_fmt(chain[1], 1)} |"
        )
    return "\n".join(lines)


def cpu_table(steps: Sequence[Step]) -> str:
    processes = list(dict.fromkeys(name for s in steps for name in s.cpu_ms))
    lines = [
        "| variant | users | req/s | " + " | ".join(processes) + " | all | Locust |",
        "|---|---|---|" + "---|" * (len(processes) + 2),
    ]
    for s in steps:
        cells = [_fmt(s.cpu_ms[p]) if p in s.cpu_ms else "" for p in processes]
        lines.append(
            f"| {s.variant} | {s.users} | {_fmt(s.throughput, 2)} | "
            + " | ".join(cells)
            + f" | {_fmt(sum(s.cpu_ms.values()))} | {_fmt(s.load_cpu_ms)} |"
        )
    return "\n".join(lines)


def best_by_variant(steps: Sequence[Step], ceiling: Ceiling) -> dict[str, Step]:
    """Each variant's step nearest the limit."""
    best: dict[str, Step] = {}
    for s in steps:
        if s.variant not in best or ratio(s, ceiling) > ratio(best[s.variant], ceiling):
            best[s.variant] = s
    return best


def saturation(steps: Sequence[Step], ceiling: Ceiling) -> int:
    """The fewest users at which the ratio to the limit is within 5 % of the variant's best."""
    best = max(ratio(s, ceiling) for s in steps)
    return min(s.users for s in steps if ratio(s, ceiling) >= 0.95 * best)


def findings(steps: Sequence[Step], ceiling: Ceiling) -> str:
    """Computed sentences: saturation point, batching on vs off, stack vs naive."""
    grouped: dict[str, list[Step]] = {}
    for s in steps:
        grouped.setdefault(s.variant, []).append(s)
    best = best_by_variant(steps, ceiling)
    lines = []
    for variant, rows in grouped.items():
        knee = saturation(rows, ceiling)
        at_knee = next(s for s in rows if s.users == knee)
        top = max(rows, key=lambda s: s.users)
        lines.append(
            f"- {LABELS.get(variant, variant)}: saturates at {knee} users "
            f"({ratio(at_knee, ceiling):.2f} × limit, p50 {at_knee.p50_ms:.0f} ms); "
            f"at {top.users} users p50 is {top.p50_ms:.0f} ms: past saturation more users only queue."
        )
    if "triton" in best and "triton-unbatched" in best:
        on, off = best["triton"].throughput, best["triton-unbatched"].throughput
        lines.append(
            f"- Dynamic batching on vs off, best step each: {on:.2f} vs {off:.2f} req/s ({on / off:.2f} ×)."
        )
    if "triton" in best and "naive" in best:
        stack, naive = best["triton"].throughput, best["naive"].throughput
        lines.append(
            f"- Shipped stack vs naive single process: {stack:.2f} vs {naive:.2f} req/s "
            f"({stack / naive:.2f} ×)."
        )
    return "\n".join(lines)


def write_report(
    out: Path,
    name: str,
    ceiling: Ceiling,
    steps: Sequence[Step],
    elapsed_s: float,
    users: Sequence[int],
    step_s: float,
) -> None:
    plots.throughput(steps, ceiling.best, out / "throughput.png")
    plots.latency(steps, out / "latency.png")
    plots.triton([s for s in steps if s.batching], out / "triton.png")
    best = best_by_variant(steps, ceiling)
    ceiling_rows = "\n".join(
        f"| {processes} | {batch} | {rate:.2f} | {rate / ceiling.best:.2f} |"
        for (processes, batch), rate in ceiling.images_per_s.items()
    )
    best_processes, best_batch = ceiling.best_setting
    summary_rows = "\n".join(
        f"| {LABELS.get(v, v)} | {s.throughput:.2f} | {ratio(s, ceiling):.2f} | {s.users} |"
        for v, s in best.items()
    )
    beside = [s.limit for s in steps if math.isfinite(s.limit)]
    beside_range = (
        f"{min(beside):.2f} to {max(beside):.2f} images/s in this run" if beside else "not in this run"
    )
    load = os.getloadavg()
    text = f"""# facerec performance report: {name}

Recognition traffic only (`POST /v1/recognize`, Locust scenario `recognise`, answers checked:
a wrong or missing person counts as a failure), gallery pre-enrolled, no recognition cache.
Users: {", ".join(map(str, users))}; {step_s:.0f} s per step; one Locust process; the variants run side
by side, interleaved step by step (alternating order), so drift in the machine's speed hits
them alike.
Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()};
load average at the end {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}. Whole run: {elapsed_s / 60:.1f} min.

## The physical limit (a): the whole chain, one single-threaded worker per core

decode → detect → landmarks → align → embed + numpy top-k on the same probes, in ONNX
Runtime with one intra-op thread and OpenCV with one thread per worker process, no HTTP
and no IPC; each model at the graph optimisation level tuned for this CPU (`facerec models
tune`), images processed one at a time or in batches (each model runs once per batch).
{ceiling.correct:.0%} of the limit's answers named the expected person.

| processes | images per batch | images/s | × best |
|---|---|---|---|
{ceiling_rows}

**Physical limit: {ceiling.best:.2f} images/s ({best_processes} processes, batch {best_batch}).** That
setting is measured again between steps, and each step's "× limit" is its throughput over
"limit beside", the mean of the measurements just before and just after it ({beside_range}):
this machine's speed drifts by a tenth or more between minutes, and a ratio of two figures
taken minutes apart would carry that drift.

## Best throughput per variant

| variant | req/s | × limit beside | at users |
|---|---|---|---|
{summary_rows}

## Findings (computed from this run)

{findings(steps, ceiling)}

## Every step

"p50 ÷ limit image time" is the median latency in units of one image's time in one worker
of the limit (batch 1): how much waiting the serving path adds. "users ÷ req/s" is the
least mean latency that N closed-loop users can see at that throughput (Little's law): no
p50 or p99 can be below it, so "p99 ÷ 1-user p50" stays under 4 at 16 users only if the
throughput is at least 4 times the 1-user one. Triton columns are averages over the
step from the statistics extension (Δ inference_count / Δ execution_count; queue ns per request).

{table(steps, ceiling)}

## CPU per request

CPU ms (user + system) per answered request during each step, per process with its
children (Triton's column includes its Python-backend stubs, where inference runs).
"all" is the variant's; Locust's own, generating the load and checking the answers on the
same cores (its start-up included), is beside it. With the cores saturated, "all" plus
Locust decides the throughput.

{cpu_table(steps)}

![throughput](throughput.png)
![latency](latency.png)
![Triton batching](triton.png)

## What bounds the throughput

Two cores are shared by everything: Triton's Python-backend stubs (the face_chain's, one
a core, decoding, cropping and warping and running the detector and landmark model; the
embedder's), the orchestrator (HTTP, the header check, one gRPC call an image, the search
call, the answer), the search service, and Locust itself generating load and parsing
answers. The limit has both cores to itself, with no serialisation, no inter-process copies
and no HTTP. So the ratio to the limit, not the absolute req/s, is the figure to compare;
on a GPU the model share shrinks and the CPU work around it dominates.
"""
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(
        json.dumps(
            {
                "name": name,
                "elapsed_s": elapsed_s,
                "ceiling": {
                    "settings": [
                        {"processes": processes, "batch": batch, "images_per_s": rate}
                        for (processes, batch), rate in ceiling.images_per_s.items()
                    ],
                    "best": ceiling.best,
                    "correct": ceiling.correct,
                },
                "steps": [dataclasses.asdict(s) for s in steps],
                "ratios": {v: ratio(s, ceiling) for v, s in best.items()},
            },
            indent=2,
        )
    )
