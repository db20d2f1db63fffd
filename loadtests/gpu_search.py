"""The search benchmark on a GPU: the service searching its GPU copy against raw faiss on the GPU.

``search_service.bench`` measures the CPU. This takes its vectors, timings, service and table
as they are, and changes only where the index lives: the service is started with ``--device
gpu`` and the raw index is copied to GPU 0. FAISS GPU indexes are not thread-safe, so the raw searches go
through one lock, as the service's go through its one device thread.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import threading
import time
from pathlib import Path

import faiss
import numpy as np

from search_service import bench
from search_service.bench import Figures, Matrix


def raw_on_gpu(kind: str, data: Matrix, queries: Matrix, args: argparse.Namespace) -> Figures:
    figures = Figures()
    dim = data.shape[1]
    resources = faiss.StandardGpuResources()
    before = bench.rss_mib(os.getpid())  # host memory only: the index itself is on the GPU
    started = time.perf_counter()
    if kind == "flat":
        cpu_index: faiss.Index = faiss.IndexFlatIP(dim)
    else:
        cpu_index = faiss.index_factory(dim, f"IVF{args.nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        # As search_service.bench trains: on the first chunk, once it holds 39 * nlist vectors.
        cpu_index.train(data[: max(args.chunk, 39 * args.nlist)][: 256 * args.nlist])
    index = faiss.index_cpu_to_gpu(resources, 0, cpu_index)
    if kind != "flat":
        faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", args.nprobe)
    for start in range(0, len(data), args.chunk):
        index.add(data[start : start + args.chunk])
    figures.add_s = time.perf_counter() - started
    figures.memory_mib = bench.rss_mib(os.getpid()) - before
    lock = threading.Lock()

    def search(q: Matrix) -> object:
        with lock:
            return index.search(q, 10)

    bench.measure_searches(figures, search, queries, args)
    return figures


def report(n: int, dim: int, kinds: list[str], budget_s: float, work_dir: Path | None = None) -> str:
    """Markdown table in ``search_service.bench``'s layout: service on GPU, raw faiss on GPU, ratio."""
    args = argparse.Namespace(chunk=50_000, nlist=1024, nprobe=32, clients=4, budget=budget_s)
    rng = np.random.default_rng(0)
    data, queries = bench.unit_rows(rng, n, dim), bench.unit_rows(rng, 4096, dim)
    out = io.StringIO()
    out.write(
        f"faiss {faiss.__version__} on GPU 0: n={n} dim={dim} chunk={args.chunk} ivf nlist={args.nlist} "
        f"nprobe={args.nprobe} k=10 clients={args.clients}\n\n"
        "| index | measure | service | raw faiss | ratio |\n|---|---|---|---|---|\n"
    )
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp, contextlib.redirect_stdout(out):
        for kind in kinds:
            service = bench.bench_service(kind, data, queries, args, Path(tmp), device="gpu")
            bench.print_table(kind, service, raw_on_gpu(kind, data, queries, args))
    return out.getvalue()
