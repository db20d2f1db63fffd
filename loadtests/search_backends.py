"""The two search backends side by side in one run (a benchmark, not a test).

``python -m loadtests.search_backends [--sizes 100000 1000000] [--dim 512]``

For each gallery size N, N vectors of a normalised Gaussian mixture (N/20 "people", each
face at cosine ≈ 0.78 from its person's centre, like face embeddings) are put into:

* the FAISS search service (``python -m search_service`` processes), each kind of
  ``FACEREC_INDEX__KIND`` (flat, ivf, hnsw), and flat over 2 shards (this project's fan-out);
* Milvus Lite served by ``python -m orchestrator.runtime.milvus_lite`` (as ``facerec up`` runs
  it), the same kinds mapped to FLAT, IVF_FLAT and HNSW;

both through the orchestrator's own clients (:class:`SearchClient`, :class:`MilvusSearch`) over
loopback, with the project's default index settings (nlist 256, nprobe 16, M 32,
efConstruction 80, ef 64). Measured: insert rate (batches of 10,000; "ready" adds the time to
the first answer, and for Milvus a flush and a reload, which build the index of every
segment: Milvus Lite scans rows not indexed yet slowly), sequential batch-1 and batch-64
search QPS, recall@10 against exact search (faiss ``IndexFlatIP`` in this process), and the server's
resident memory growth. Prints a markdown table and writes it under
``loadtests/results/search_backends/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
import psutil

from orchestrator.clients.milvus import MilvusSearch
from orchestrator.clients.milvus_index import index_bytes, milvus_name
from orchestrator.clients.search import SearchClient
from orchestrator.clients.search_backend import SearchBackend
from search_service.schema import CollectionSpec, IndexKind
from tests.support.processes import ChildProcess, MilvusLiteProcess, SearchServiceProcess

Matrix = npt.NDArray[np.float32]
RESULTS = Path(__file__).resolve().parent / "results" / "search_backends"
K = 10
ADD_BATCH = 10_000


def mixture(rng: np.random.Generator, n: int, dim: int, centres: Matrix) -> Matrix:
    """(n, dim) unit vectors: a random centre each, plus Gaussian noise of the centre's norm × 0.8."""
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        noise = rng.standard_normal((m, dim), dtype=np.float32)
        noise *= 0.8 / np.linalg.norm(noise, axis=1, keepdims=True)
        block = centres[rng.integers(0, len(centres), m)] + noise
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


@dataclass
class Row:
    backend: str
    kind: str
    n: int
    insert_per_s: float
    ready_s: float
    qps_1: float
    p50_1_ms: float
    qps_64: float
    recall: float
    rss_mib: float
    estimate_mib: float


async def settle(backend: MilvusSearch, name: str) -> None:
    """Flush, then release and load the collection: Milvus Lite builds the index of every
    sealed segment before the load returns (its background build would still be running
    during the measurement). Not for a live collection: it cannot be searched meanwhile."""
    await backend.flush(name)
    await backend._call("release_collection", milvus_name(name))
    await backend._call("load_collection", milvus_name(name))


def exact_top(gallery: Matrix, queries: Matrix) -> npt.NDArray[np.int64]:
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    return np.asarray(index.search(queries, K)[1], dtype=np.int64)


def rss(processes: list[ChildProcess]) -> float:
    total = 0.0
    for proc in processes:
        if proc.pid is not None:
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(proc.pid).memory_info().rss / 2**20
    return total


async def measure(
    backend: SearchBackend,
    processes: list[ChildProcess],
    label: str,
    kind: IndexKind,
    gallery: Matrix,
    queries: Matrix,
    truth: npt.NDArray[np.int64],
) -> Row:
    n, dim = gallery.shape
    name = f"bench-{kind}-{n}"
    spec = CollectionSpec(dim=dim, index=kind)
    await backend.drop_collection(name, missing_ok=True)
    before = rss(processes)
    await backend.create_collection(name, spec)
    start = time.perf_counter()
    for at in range(0, n, ADD_BATCH):
        await backend.add(name, np.arange(at, min(n, at + ADD_BATCH)), gallery[at : at + ADD_BATCH])
    inserted = time.perf_counter() - start
    if isinstance(backend, MilvusSearch):
        await settle(backend, name)
    await backend.search(name, queries[:1], K)
    ready = time.perf_counter() - start
    singles = []
    for q in queries[:200]:
        t = time.perf_counter()
        await backend.search(name, q[None], K)
        singles.append(time.perf_counter() - t)
    t = time.perf_counter()
    found: list[list[int]] = []
    for at in range(0, len(queries), 64):
        found += [[h.id for h in row] for row in await backend.search(name, queries[at : at + 64], K)]
    batch_s = time.perf_counter() - t
    recall = float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))
    grown = rss(processes) - before
    await backend.drop_collection(name)
    row = Row(
        label,
        kind,
        n,
        n / inserted,
        ready,
        len(singles) / sum(singles),
        1000 * float(np.median(singles)),
        len(queries) / batch_s,
        recall,
        grown,
        index_bytes(kind, n, dim) / 2**20,
    )
    print(row, flush=True)
    return row


@contextlib.asynccontextmanager
async def faiss_service(root: Path, shards: int) -> AsyncIterator[tuple[SearchBackend, list[ChildProcess]]]:
    token = "bench-token-" + "0" * 24
    procs = [
        SearchServiceProcess(
            root / f"faiss{shards}-{i}", shard=f"{i}/{shards}" if shards > 1 else None, token=token
        )
        for i in range(shards)
    ]
    try:
        for proc in procs:
            proc.start().wait_ready(120)
        async with SearchClient([p.url for p in procs], token=token, timeout=600) as client:
            yield client, list(procs)
    finally:
        for proc in procs:
            proc.stop()


@contextlib.asynccontextmanager
async def milvus_lite(root: Path) -> AsyncIterator[tuple[SearchBackend, list[ChildProcess]]]:
    proc = MilvusLiteProcess(root / "milvus.db")
    try:
        proc.start().wait_ready(120)
        client = MilvusSearch(proc.url, token=proc.token, timeout=600)
        try:
            yield client, [proc]
        finally:
            await client.aclose()
    finally:
        proc.stop()


Opener = Callable[[Path], contextlib.AbstractAsyncContextManager[tuple[SearchBackend, list[ChildProcess]]]]


async def run(sizes: list[int], dim: int, queries_n: int, kinds: list[IndexKind]) -> list[Row]:
    rng = np.random.default_rng(0)
    rows: list[Row] = []
    plans: list[tuple[str, Opener, list[IndexKind]]] = [
        ("faiss service", lambda root: faiss_service(root, 1), kinds),
        ("faiss service, 2 shards", lambda root: faiss_service(root, 2), ["flat"]),
        ("milvus lite", milvus_lite, kinds),
    ]
    for n in sizes:
        centres = rng.standard_normal((max(1, n // 20), dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        gallery = mixture(rng, n, dim, centres)
        queries = mixture(rng, queries_n, dim, centres)
        truth = exact_top(gallery, queries)
        for label, opener, plan_kinds in plans:
            with tempfile.TemporaryDirectory(prefix="search-backends-") as tmp:
                async with opener(Path(tmp)) as (backend, procs):
                    for kind in plan_kinds:
                        rows.append(await measure(backend, procs, label, kind, gallery, queries, truth))
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| N | backend | kind | insert/s | ready s | batch-1 QPS | batch-1 p50 ms | batch-64 QPS "
        "| recall@10 | RSS growth MiB | formula MiB |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.n:,} | {r.backend} | {r.kind} | {r.insert_per_s:,.0f} | {r.ready_s:.1f} | {r.qps_1:,.0f} "
            f"| {r.p50_1_ms:.2f} | {r.qps_64:,.0f} | {r.recall:.3f} | {r.rss_mib:,.0f} "
            f"| {r.estimate_mib:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1024, help="for batch-64 QPS and recall")
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivf", "hnsw"])
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = asyncio.run(run(args.sizes, args.dim, args.queries, args.kinds))
    report = (
        f"# Search backends, {started}\n\n"
        f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
        f"dim {args.dim}, {args.queries} queries, k={K}; "
        f"`python -m loadtests.search_backends --sizes {' '.join(map(str, args.sizes))}`\n\n"
        f"{table(rows)}\n"
    )
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{'-'.join(str(n) for n in args.sizes)}.md"
    out.write_text(report)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
