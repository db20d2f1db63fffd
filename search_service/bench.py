"""Benchmark of the search service against raw FAISS in the same run (not a test).

``python -m search_service.bench [--n 1000000 --dim 512 --kinds flat,ivf]``

For each index kind a fresh service process is started; random unit float32 vectors
are sent to it in base64 chunks, then searches are timed at batch 1 and batch 64
(sequential latency p50/p95, and QPS with several concurrent clients). The same
operations are then done with raw FAISS in this process, and the table gives the
service figure, the raw figure and their ratio (service / raw).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import httpx
import numpy as np
import numpy.typing as npt

from search_service.vectors import encode_vectors

Matrix = npt.NDArray[np.float32]


@dataclass
class Figures:
    add_s: float = 0.0
    memory_mib: float = 0.0  # RSS growth while adding
    rss_mib: float = 0.0  # whole process after adding
    peak_rss_mib: float = 0.0
    latency_ms: dict[int, tuple[float, float]] = field(default_factory=dict)  # batch: p50, p95
    qps: dict[int, float] = field(default_factory=dict)


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident (``VmRSS``) or peak resident (``VmHWM``) memory of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def unit_rows(rng: np.random.Generator, n: int, dim: int, chunk: int = 100_000) -> Matrix:
    """(n, dim) random unit vectors, generated in chunks to bound peak memory."""
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def timed_runs(
    search: Callable[[Matrix], object], queries: Matrix, batch: int, budget_s: float, max_runs: int
) -> tuple[float, float]:
    """Sequential latency p50/p95 in ms over up to ``max_runs`` calls or ``budget_s``."""
    times: list[float] = []
    start = time.perf_counter()
    for i in range(max_runs):
        rows = np.arange(i * batch, (i + 1) * batch) % len(queries)
        t0 = time.perf_counter()
        search(queries[rows])
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s and len(times) >= 5:
            break
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def throughput(
    search: Callable[[Matrix], object], queries: Matrix, batch: int, clients: int, budget_s: float
) -> float:
    """Queries per second with ``clients`` concurrent callers for about ``budget_s``."""
    deadline = time.perf_counter() + budget_s

    def loop(c: int) -> int:
        done, i = 0, c
        while time.perf_counter() < deadline or done == 0:
            rows = np.arange(i * batch, (i + 1) * batch) % len(queries)
            search(queries[rows])
            done += batch
            i += clients
        return done

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(loop, range(clients)))
    return total / (time.perf_counter() - start)


def measure_searches(
    figures: Figures, search: Callable[[Matrix], object], queries: Matrix, args: argparse.Namespace
) -> None:
    for batch in (1, 64):
        figures.latency_ms[batch] = timed_runs(search, queries, batch, args.budget, 200)
        figures.qps[batch] = throughput(search, queries, batch, args.clients, args.budget)


class Service:
    def __init__(self, data_dir: Path, device: str = "cpu") -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        cmd = [
            sys.executable,
            "-m",
            "search_service",
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
            "--device",
            device,
        ]
        token = secrets.token_urlsafe(32)
        self.proc = subprocess.Popen(cmd, env={**os.environ, "FACEREC_SEARCH_TOKEN": token})
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=600,
        )
        for _ in range(600):
            try:
                if self.http.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("search service did not start")

    def stop(self) -> None:
        self.http.close()
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(600)


def bench_service(
    kind: str, data: Matrix, queries: Matrix, args: argparse.Namespace, work: Path, device: str = "cpu"
) -> Figures:
    figures = Figures()
    service = Service(work / f"service-{kind}", device)
    try:
        http = service.http
        spec = {"dim": data.shape[1], "index": kind, "nlist": args.nlist, "nprobe": args.nprobe}
        http.put("/collections/bench", json=spec).raise_for_status()
        idle = rss_mib(service.proc.pid)
        t0 = time.perf_counter()
        for start in range(0, len(data), args.chunk):
            block = data[start : start + args.chunk]
            ids = list(range(start, start + len(block)))
            body = {"ids": ids, "vectors": encode_vectors(block)}
            http.post("/collections/bench/vectors", json=body).raise_for_status()
        figures.add_s = time.perf_counter() - t0
        figures.rss_mib = rss_mib(service.proc.pid)
        figures.peak_rss_mib = rss_mib(service.proc.pid, "VmHWM")
        figures.memory_mib = figures.rss_mib - idle

        def search(q: Matrix) -> object:
            answer = http.post("/collections/bench/search", json={"vectors": encode_vectors(q), "k": 10})
            answer.raise_for_status()
            return answer.json()

        measure_searches(figures, search, queries, args)
        # Dropping avoids timing a multi-GB snapshot at shutdown.
        http.delete("/collections/bench").raise_for_status()
    finally:
        service.stop()
    return figures


def bench_raw(kind: str, data: Matrix, queries: Matrix, args: argparse.Namespace) -> Figures:
    figures = Figures()
    dim = data.shape[1]
    before = rss_mib(os.getpid())
    t0 = time.perf_counter()
    if kind == "flat":
        index: faiss.Index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    else:
        # As the service: train on the first chunk once it holds 39 * nlist vectors.
        index = faiss.index_factory(dim, f"IVF{args.nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        first = data[: max(args.chunk, 39 * args.nlist)]
        index.train(first[: 256 * args.nlist])
        index.nprobe = args.nprobe  # type: ignore[attr-defined]
    for start in range(0, len(data), args.chunk):
        block = data[start : start + args.chunk]
        index.add_with_ids(block, np.arange(start, start + len(block)))
    figures.add_s = time.perf_counter() - t0
    figures.memory_mib = rss_mib(os.getpid()) - before
    measure_searches(figures, lambda q: index.search(q, 10), queries, args)
    return figures


def print_table(kind: str, service: Figures, raw: Figures) -> None:
    rows: list[tuple[str, float, float]] = [
        ("add all vectors (s)", service.add_s, raw.add_s),
        ("memory: RSS growth (MiB)", service.memory_mib, raw.memory_mib),
    ]
    for batch in (1, 64):
        rows.append((f"batch {batch} p50 (ms)", *_pair(service.latency_ms, raw.latency_ms, batch, 0)))
        rows.append((f"batch {batch} p95 (ms)", *_pair(service.latency_ms, raw.latency_ms, batch, 1)))
        rows.append((f"batch {batch} QPS (queries/s)", service.qps[batch], raw.qps[batch]))
    for name, ours, theirs in rows:
        ratio = ours / theirs if theirs else float("nan")
        print(f"| {kind:<5} | {name:<31} | {ours:>11.1f} | {theirs:>11.1f} | {ratio:>7.2f} |")
    print(
        f"| {kind:<5} | {'service RSS / peak RSS (MiB)':<31} | {service.rss_mib:>5.0f} / "
        f"{service.peak_rss_mib:<5.0f} |             |         |"
    )


def _pair(
    a: dict[int, tuple[float, float]], b: dict[int, tuple[float, float]], batch: int, i: int
) -> tuple[float, float]:
    return a[batch][i], b[batch][i]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m search_service.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--kinds", default="flat,ivf")
    parser.add_argument("--chunk", type=int, default=50_000, help="vectors per add request")
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--clients", type=int, default=4, help="concurrent callers for QPS")
    parser.add_argument("--budget", type=float, default=15.0, help="seconds per measurement")
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    data = unit_rows(rng, args.n, args.dim)
    queries = unit_rows(rng, 4096, args.dim)
    print(
        f"search service vs raw faiss {faiss.__version__}: n={args.n} dim={args.dim} "
        f"chunk={args.chunk} ivf nlist={args.nlist} nprobe={args.nprobe} k=10 "
        f"clients={args.clients} cpus={os.cpu_count()} (data made in "
        f"{time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    print("| index | measure                         |     service |   raw faiss | ratio   |")
    print("|-------|---------------------------------|-------------|-------------|---------|")
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        for kind in args.kinds.split(","):
            service = bench_service(kind, data, queries, args, Path(tmp))
            raw = bench_raw(kind, data, queries, args)
            print_table(kind, service, raw)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
