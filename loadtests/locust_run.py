"""Run one headless Locust scenario in a child process and read its CSV summary.

Locust monkey-patches the standard library with gevent on import, so it never runs inside
the report's own process. One Locust process (no ``--processes``): on two cores a second
worker would only take CPU from the service it measures.

Also a command line for humans, against a running stack or one started for the run::

    FACEREC_ADMIN_KEY=frk_... python -m loadtests.locust_run mixed --host http://127.0.0.1:8000 -u 8 -t 60
    python -m loadtests.locust_run soak --start-stack      # RSS of Triton, search, orchestrator watched
    python -m loadtests.locust_run soak --start-stack --backend milvus
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.stack import BACKENDS

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "loadtests" / "scenarios"
RESULTS = ROOT / "loadtests" / "results"

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LocustSummary:
    requests: int
    failures: int
    throughput: float
    """Requests per second over the run."""
    p50_ms: float
    p95_ms: float
    p99_ms: float
    exit_code: int
    cpu_s: float = math.nan
    """Locust's own CPU seconds (user + system) for the run: the load generator shares the
    machine's cores with what it measures."""

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else math.nan


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan


def read_summary(stats_csv: Path, exit_code: int, name: str = "Aggregated") -> LocustSummary:
    with stats_csv.open() as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == name:
                return LocustSummary(
                    requests=int(row["Request Count"]),
                    failures=int(row["Failure Count"]),
                    throughput=_number(row["Requests/s"]),
                    p50_ms=_number(row["50%"]),
                    p95_ms=_number(row["95%"]),
                    p99_ms=_number(row["99%"]),
                    exit_code=exit_code,
                )
    raise ValueError(f"{stats_csv} has no {name!r} row")


def run_locust(
    scenario: str,
    host: str,
    out_prefix: Path,
    *,
    users: int | None = None,
    run_time_s: float | None = None,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    html: bool = True,
) -> LocustSummary:
    """Run ``loadtests/scenarios/<scenario>.py`` headless; CSV and HTML go to ``out_prefix``*."""
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(SCENARIOS / f"{scenario}.py"),
        "--headless",
        "--host",
        host,
        "--csv",
        str(out_prefix),
        "--only-summary",
        "--exit-code-on-error",
        "1",
        "--stop-timeout",
        "30",
        "--loglevel",
        "WARNING",
        "--logfile",
        f"{out_prefix}.log",
    ]
    if html:
        command += ["--html", f"{out_prefix}.html"]
    if users is not None:
        command += ["-u", str(users), "-r", str(users)]
    if run_time_s is not None:
        command += ["-t", f"{max(1, round(run_time_s))}s"]
    command += extra_args or []
    child_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FACEREC_LOAD_RSS_CSV": f"{out_prefix}_rss.csv",
        **(env or {}),
    }
    # Bounded: the run time plus start-up, stop timeout and the gallery set-up.
    limit_s = (run_time_s or 3600) + 180
    started = time.monotonic()
    # Locust is the one child reaped meanwhile, so the children's usage grows by its own.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        command, env=child_env, cwd=ROOT, timeout=limit_s, capture_output=True, text=True, check=False
    )
    log.info(
        "locust %s %s users: exit %s in %.0fs", scenario, users, done.returncode, time.monotonic() - started
    )
    log_file = Path(f"{out_prefix}.log")
    if log_file.is_file() and log_file.stat().st_size == 0:
        log_file.unlink()  # Locust logs only warnings here: an empty log says nothing
    stats = Path(f"{out_prefix}_stats.csv")
    if not stats.is_file():
        raise RuntimeError(f"locust wrote no statistics (exit {done.returncode}):\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dataclasses.replace(read_summary(stats, done.returncode), cpu_s=cpu_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run one Locust scenario headless, CSV + HTML report")
    parser.add_argument(
        "scenario", choices=sorted(p.stem for p in SCENARIOS.glob("[a-z]*.py") if p.stem != "shapes")
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--host", help="orchestrator URL, e.g. http://127.0.0.1:8000 (FACEREC_ADMIN_KEY set)")
    target.add_argument("--start-stack", action="store_true", help="start a local stack on free ports")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="faiss", help="search backend of --start-stack (default faiss)"
    )
    parser.add_argument("-u", "--users", type=int, help="omit for the shaped scenarios (ramp, spike, soak)")
    parser.add_argument("-t", "--run-time", type=float, help="seconds; omit for the shaped scenarios")
    parser.add_argument(
        "--out", type=Path, help="output prefix (default loadtests/results/<scenario>-<time>/)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    out = args.out or RESULTS / f"{args.scenario}-{time.strftime('%Y%m%d-%H%M%S')}" / args.scenario
    with contextlib.ExitStack() as running:
        host, env = args.host, {}
        if args.start_stack:
            from loadtests.stack import ADMIN_KEY, Stack, cpu_repository

            root = Path(running.enter_context(tempfile.TemporaryDirectory(prefix="facerec-load-")))
            stack = running.enter_context(Stack(root, cpu_repository(), backend=args.backend))
            host = stack.url
            watch = ",".join(f"{name}={pid}" for name, pid in stack.pids().items())
            env = {"FACEREC_ADMIN_KEY": ADMIN_KEY, "FACEREC_LOAD_WATCH": watch}
        summary = run_locust(args.scenario, host, out, users=args.users, run_time_s=args.run_time, env=env)
    print(
        f"{args.scenario}: {summary.requests} requests, {summary.failures} failures, "
        f"{summary.throughput:.1f} req/s, p50 {summary.p50_ms:.0f} ms, p95 {summary.p95_ms:.0f} ms, "
        f"p99 {summary.p99_ms:.0f} ms; CSV/HTML at {out}*"
    )
    rss = Path(f"{out}_rss.json")
    if rss.is_file():
        for verdict in json.loads(rss.read_text()):
            print(
                f"RSS {verdict['name']}: {verdict['start_mb']:.0f} → {verdict['end_mb']:.0f} MB "
                f"({100 * verdict['growth']:+.1f} %): {'flat' if verdict['flat'] else 'GROWING'}"
            )
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
