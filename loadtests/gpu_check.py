"""``make gpu-check``: the first minutes on a machine with an NVIDIA GPU, turned into figures.

    python -m loadtests.gpu_check [--serve auto|compose|triton] [--steps drift,flow,perf,rollout,search]

First every prerequisite is checked, and the check stops with each missing one named and its
fix (``loadtests.gpu_prereqs``). Then the GPU repository is served (``loadtests.gpu_serving``:
docker-compose.gpu.yml as a project of its own, or with ``--serve triton`` a ``tritonserver``
installed here, which ``auto`` takes when Docker cannot reach the GPU), and the steps run,
each timed, a failed one noted without stopping the others:

- drift: the threshold's calibration faces embedded by Triton on the GPU (TensorRT FP16)
  against ONNX Runtime FP32 on the CPU, with the verdict on the threshold (``loadtests.fp16_drift``);
- flow: the load gallery enrolled through the API, then the held-out probes recognised
  (``loadtests.gallery``, ``loadtests.probes``);
- perf: perf_analyzer on every model at batch 1–64 (``loadtests.perf_analyzer``);
- rollout: a switch to the other arcface version under recognition traffic (``loadtests.rollout_swap``);
- search: the search service searching its GPU copy against raw faiss on the GPU (``loadtests.gpu_search``).

The report goes to ``loadtests/results/gpu-<UTC time>/report.md``, perf_analyzer's CSVs and
logs beside it. Exit status: 2 when a prerequisite is missing, 1 when a step failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from loadtests import perf_analyzer
from loadtests.gpu_prereqs import Gpu, Machine, engine_cache_problems, repository_problems
from loadtests.gpu_serving import PROJECT, ComposeStack, LocalStack
from loadtests.gpu_steps import STEPS, Check, Section, run_step
from loadtests.stack import data_dir
from orchestrator.runtime.processes import StartError
from tests.support.photos import fetch_photos

ROOT = Path(__file__).resolve().parent.parent


def _steps(text: str) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(set(chosen) - set(STEPS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"steps are {', '.join(STEPS)}; not {', '.join(unknown) or 'none'}")
    return chosen


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--serve", choices=("auto", "compose", "triton"), default="auto")
    parser.add_argument("--steps", type=_steps, default=STEPS, help=f"comma-separated, of {','.join(STEPS)}")
    parser.add_argument("--check-only", action="store_true", help="check the prerequisites, start nothing")
    parser.add_argument("--tritonserver", default="tritonserver", help="--serve triton: the GPU binary")
    parser.add_argument("--perf-analyzer", type=shlex.split, default=["perf_analyzer"], help="its command")
    parser.add_argument("--batches", type=_ints, default=perf_analyzer.BATCHES)
    parser.add_argument("--concurrency", type=int, default=4, help="perf_analyzer's requests in flight")
    parser.add_argument("--rollout-clients", type=int, default=8)
    parser.add_argument("--search-n", type=int, default=1_000_000)
    parser.add_argument("--search-dim", type=int, default=512)
    parser.add_argument("--search-kinds", type=lambda s: s.split(","), default=["flat", "ivf"])
    parser.add_argument("--port", type=int, default=8000, help="compose: the API's host port")
    parser.add_argument("--triton-grpc-port", type=int, default=8001, help="compose: Triton's host port")
    parser.add_argument(
        "--start-timeout", type=float, default=2400.0, help="s; the first start builds engines"
    )
    parser.add_argument("--out", type=Path, help="default loadtests/results/gpu-<UTC time>")
    return parser.parse_args(argv)


def prerequisites(
    args: argparse.Namespace, machine: Machine, repository: Path
) -> tuple[list[Gpu], str, list[str]]:
    """The GPUs, the way to serve (compose or triton) and every missing piece."""
    gpus, problems = machine.gpus()
    problems += repository_problems(repository)
    serve = args.serve
    if serve == "auto":
        docker, triton = machine.docker(), machine.tritonserver(args.tritonserver)
        serve = "compose" if not docker else "triton" if not triton else "auto"
        if serve == "auto":
            problems += [f"nothing to serve the GPU repository with: {p}" for p in docker + triton]
    if serve == "compose":
        problems += machine.docker()
        if "rollout" in args.steps:
            problems += machine.repository_writable_by_orchestrator(repository)
    if serve == "triton":
        problems += machine.tritonserver(args.tritonserver) + engine_cache_problems(repository)
    if "perf" in args.steps:
        problems += machine.perf_analyzer(args.perf_analyzer)
    if "search" in args.steps:
        problems += machine.faiss()
    return gpus, serve, list(dict.fromkeys(problems))


def write_report(
    out: Path, started: datetime, gpus: Sequence[Gpu], serve: str, sections: Sequence[Section]
) -> Path:
    """``out/report.md``: the machine, a summary line per step, then each step's figures."""
    lines = [
        f"# GPU check — {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Host {platform.node()}, {os.cpu_count()} CPUs; served by "
        + (f"docker-compose.gpu.yml (project {PROJECT})" if serve == "compose" else "a local tritonserver")
        + ".",
        "",
        "| GPU | driver | memory MiB | compute capability |",
        "|---|---|---|---|",
        *(f"| {g.name} | {g.driver} | {g.memory_mib} | {g.compute_capability} |" for g in gpus),
        "",
        "| step | result | seconds |",
        "|---|---|---|",
        *(f"| {s.title} | {'FAILED' if s.failed else 'ok'} | {s.seconds:.0f} |" for s in sections),
    ]
    for section in sections:
        lines += ["", f"## {section.title}", "", section.body.rstrip()]
    if serve == "compose":
        lines += ["", f"The stack is still up: `docker compose -p {PROJECT} -f docker-compose.gpu.yml down`."]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    data = data_dir()
    gpus, serve, problems = prerequisites(args, Machine(), data / "models" / "repository" / "gpu")
    if problems:
        sys.stderr.write("gpu-check cannot start:\n" + "".join(f"  - {p}\n" for p in problems))
        return 2
    if args.check_only:
        sys.stderr.write(f"gpu-check: everything is there; it would serve with {serve}.\n")
        return 0
    started = datetime.now(UTC)
    out = args.out or ROOT / "loadtests" / "results" / f"gpu-{started:%Y%m%d-%H%M%S}"
    photos = fetch_photos(data / "testdata")
    if serve == "compose":
        stack: ComposeStack | LocalStack = ComposeStack(
            data, args.port, args.triton_grpc_port, args.start_timeout
        )
    else:
        root = data / "gpu-check" / f"stack-{started:%Y%m%d-%H%M%S}"
        binary = Path(shutil.which(args.tritonserver) or args.tritonserver)
        stack = LocalStack(binary, data / "models" / "repository" / "gpu", root, args.start_timeout)
    begun = time.perf_counter()
    try:
        with stack as serving:
            check = Check(serving, data, photos, out, args)
            sections = [run_step(name, check) for name in args.steps]
    except (OSError, subprocess.CalledProcessError, StartError) as error:
        failed = f"Failed: `{type(error).__name__}: {error}`\n"
        sections = [Section("Serving the GPU repository", failed, time.perf_counter() - begun, failed=True)]
    path = write_report(out, started, gpus, serve, sections)
    sys.stdout.write(path.read_text())
    return 1 if any(s.failed for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
