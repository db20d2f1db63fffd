"""``make bench-triton``: each model through Triton, measured by NVIDIA's perf_analyzer, next to
ONNX Runtime in process.

In process first, with Triton not yet started: the model at the graph optimisation level its
config gives Triton's stub, one single-threaded process per core (``tuning.instances_per_s``),
at batch 1 and at the model's best batch (of 1, 2, 4, … up to its ``max_batch_size``, the one
at which a single process does most items a second). The better of the two is the most this
CPU does with the model: the limit Triton's figures are a ratio of.

Then Triton on the CPU repository on free ports, and perf_analyzer on each model over gRPC with
batch-1 requests at each concurrency (one run per level, ``loadtests.perf_analyzer``), so
throughput rises only as far as Triton's dynamic batcher and instances make it.

Writes ``loadtests/results/bench-triton/<name>.md`` and ``<name>.json``; perf_analyzer's CSVs
and logs and Triton's log go to ``$FACEREC_DATA_DIR/bench-triton/<name>/``.

    python -m loadtests.bench_triton                        # ≈ 5 min on 2 cores
    python -m loadtests.bench_triton --concurrency 1,8 --interval-ms 500 --seconds 0.5
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from loadtests import perf_analyzer
from loadtests.bench_triton_md import Bench, InProcess, ModelBench, Settings, write
from loadtests.perf_analyzer import PerfRun
from loadtests.stack import cpu_repository, data_dir, triton_environment
from orchestrator.modelrepo import tuning
from orchestrator.modelrepo.catalog import DEFAULT_MODELS, ModelSpec
from orchestrator.modelrepo.repository import CONFIG_FILE, MODEL_FILE, parse
from orchestrator.modelrepo.tuning import configured_level
from orchestrator.runtime.triton_server import TritonPorts, TritonServer

log = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results" / "bench-triton"


def measure_in_process(
    repository: Path, spec: ModelSpec, processes: int, seconds: float, batches: Sequence[int]
) -> InProcess:
    model = repository / spec.name / "1" / MODEL_FILE
    level = configured_level(repository, spec)
    candidates = sorted({1, *perf_analyzer.batches_for(repository, spec.name, batches)})
    single = {b: tuning.items_per_s(model, spec, level, 1, seconds, b) for b in candidates}
    best = max(single, key=lambda b: single[b])
    batch1 = tuning.instances_per_s(model, spec, level, processes, seconds, 1)
    at_best = batch1 if best == 1 else tuning.instances_per_s(model, spec, level, processes, seconds, best)
    return InProcess(level, processes, batch1, best, at_best, single)


def triton_instances(repository: Path, model: str) -> int:
    config = parse((repository / model / CONFIG_FILE).read_text())
    return sum(group.count for group in config.instance_group) or 1


def write_inputs(directory: Path, spec: ModelSpec) -> Path:
    """One request's inputs for perf_analyzer, the numbers ONNX Runtime ran in process (its
    own random bytes would be NaNs and huge floats, which arcface runs twice as fast)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, values in tuning.probe_inputs(spec, 1).items():
        (directory / name).write_bytes(values.tobytes())
    return directory


def measure_triton(
    base: Sequence[str],
    server: TritonServer,
    spec: ModelSpec,
    settings: Settings,
    raw: Path,
) -> list[PerfRun]:
    """Batch-1 requests at each concurrency; a failed level is a row with its error."""
    model = spec.name
    inputs = write_inputs(raw / "inputs" / model, spec)
    runs = []
    for level in settings.concurrency:
        out = raw / f"{model}-c{level}.csv"
        try:
            run = perf_analyzer.measure(
                base,
                server.grpc_url,
                model,
                1,
                level,
                settings.interval_ms,
                out,
                300.0,
                settings.stability_percent,
                settings.max_trials,
                inputs,
            )
        except (OSError, RuntimeError, ValueError, KeyError, subprocess.TimeoutExpired) as error:
            run = PerfRun(model, 1, level, math.nan, math.nan, math.nan, str(error))
        log.info("%s at %d in flight: %.1f/s, p99 %.1f ms", model, level, run.inferences_per_s, run.p99_ms)
        runs.append(run)
    return runs


def run_bench(
    name: str,
    command: str,
    base: Sequence[str],
    repository: Path,
    specs: Sequence[ModelSpec],
    settings: Settings,
    raw: Path,
) -> Bench:
    """``raw``: where perf_analyzer's CSVs and logs and Triton's log go."""
    started, load_before = time.monotonic(), os.getloadavg()
    version = perf_analyzer.version(base)
    raw.mkdir(parents=True, exist_ok=True)
    processes = tuning.cores()
    limits = {}
    for spec in specs:
        limits[spec.name] = measure_in_process(
            repository, spec, processes, settings.seconds, settings.batches
        )
        log.info("%s in process: limit %.1f/s", spec.name, limits[spec.name].limit)
    server = TritonServer(
        triton_environment(),
        repository,
        raw / "triton.log",
        TritonPorts.free(),
        [spec.name for spec in specs],
    )
    with server:
        models = [
            ModelBench(
                spec.name,
                triton_instances(repository, spec.name),
                limits[spec.name],
                measure_triton(base, server, spec, settings, raw),
            )
            for spec in specs
        ]
    return Bench(
        name,
        command,
        tuning.cpu_name(),
        processes,
        load_before,
        os.getloadavg(),
        version,
        ort.__version__,
        settings,
        round(time.monotonic() - started, 1),
        models,
    )


def _ints(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_triton", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--name", default=time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    defaults = Settings()
    parser.add_argument("--concurrency", type=_ints, default=defaults.concurrency, help="comma-separated")
    parser.add_argument(
        "--interval-ms", type=int, default=defaults.interval_ms, help="perf_analyzer's window"
    )
    parser.add_argument("--stability", type=int, default=defaults.stability_percent, help="percent")
    parser.add_argument("--max-trials", type=int, default=defaults.max_trials, help="windows per level")
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="per in-process measurement")
    parser.add_argument("--batches", type=_ints, default=defaults.batches, help="in-process candidates")
    parser.add_argument("--models", type=lambda s: s.split(","), default=[s.name for s in DEFAULT_MODELS])
    parser.add_argument("--repository", type=Path, default=cpu_repository())
    parser.add_argument("--perf-analyzer", type=shlex.split, help="its command (default: make tools' one)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--logs", type=Path, help="default: $FACEREC_DATA_DIR/bench-triton/<name>")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    unknown = set(args.models) - {s.name for s in DEFAULT_MODELS}
    if unknown:
        parser.error(f"unknown models: {', '.join(sorted(unknown))}")
    base = args.perf_analyzer or perf_analyzer.local_command(data_dir())
    if base is None:
        print("perf_analyzer is not installed: run `make tools`", file=sys.stderr)
        return 2
    command = " ".join(["python -m loadtests.bench_triton", *(argv if argv is not None else sys.argv[1:])])
    specs = [s for s in DEFAULT_MODELS if s.name in args.models]
    try:
        bench = run_bench(
            args.name,
            command,
            base,
            args.repository,
            specs,
            Settings(
                tuple(args.concurrency),
                args.interval_ms,
                args.stability,
                args.max_trials,
                args.seconds,
                tuple(args.batches),
            ),
            args.logs or data_dir() / "bench-triton" / args.name,
        )
    except RuntimeError as error:  # perf_analyzer cannot run, Triton did not start
        print(error, file=sys.stderr)
        return 2
    out = write(bench, args.results)
    print(out.read_text())
    print(f"written to {out} and {out.with_suffix('.json')}")
    return 1 if any(run.error for model in bench.models for run in model.triton) else 0


if __name__ == "__main__":
    sys.exit(main())
