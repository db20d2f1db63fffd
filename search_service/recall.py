"""Recall of the approximate index kinds against exact ``flat`` search (a measurement, not a test).

``python -m search_service.recall [--n 100000 --dim 512 --queries 1000 --kinds ivf,hnsw]``

Each kind runs at the defaults of :class:`~search_service.schema.CollectionSpec` (what
``FACEREC_INDEX__*`` defaults to), built and searched by the service's own
:class:`~search_service.index_state.IndexState` in this process (an ivf collection trains
part-way through, as the service's does), with no HTTP in between. Two galleries:

* ``random``: uniform random unit vectors. No structure at all, every neighbour almost as far
  as any other: the worst case for both ivf and hnsw.
* ``faces``: identities, each a random unit direction, with ``per_identity`` faces scattered
  around it as ArcFace embeddings of one person are (cosine to the person's direction
  ``to_centre`` = 0.85, so two faces of one person ≈ 0.72 and of two people ≈ 0, as the
  README's calibration measures); each probe is a new face of an enrolled identity.

recall@k is |approximate top k ∩ exact top k| / k averaged over the probes (recall@1: the
approximate best hit is the exact one). Query time is per probe, one probe per search (as a
single recognition asks), and for all probes in one batch; "× flat" is the kind's time over
flat's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from search_service import faiss_index
from search_service.index_state import IndexState
from search_service.schema import CollectionSpec, IndexKind
from search_service.vectors import IdArray, Matrix

ADD_CHUNK = 10_000
"""Vectors per add, as the orchestrator's rebuild sends them a page at a time."""


def unit_rows(x: npt.NDArray[np.floating]) -> Matrix:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_vectors(rng: np.random.Generator, n: int, dim: int) -> Matrix:
    """(n, dim) uniform random unit vectors."""
    return unit_rows(rng.standard_normal((n, dim), dtype=np.float32))


def faces_around(
    rng: np.random.Generator, directions: Matrix, labels: npt.NDArray[np.intp], to_centre: float = 0.85
) -> Matrix:
    """(n, dim) unit "faces", face i of identity ``labels[i]`` (directions (p, dim)).

    Isotropic noise of per-coordinate scale s moves a face to cosine 1/√(1 + s²·dim) of its
    identity's direction: s is chosen for ``to_centre``.
    """
    dim = directions.shape[1]
    scale = np.sqrt((1 / to_centre**2 - 1) / dim)
    noise = rng.standard_normal((labels.size, dim), dtype=np.float32) * scale
    return unit_rows(directions[labels] + noise)


@dataclass(frozen=True)
class FaceSet:
    gallery: Matrix
    """(n, dim) enrolled faces; face i is of identity ``i % identities``."""
    probes: Matrix
    """(m, dim) new faces of enrolled identities."""
    probe_identity: npt.NDArray[np.intp]
    """(m,) whose face each probe is."""
    identities: int

    def identity_of(self, ids: IdArray) -> npt.NDArray[np.intp]:
        """Whose faces the gallery ids (any shape) are."""
        return (ids % self.identities).astype(np.intp)


def face_gallery(rng: np.random.Generator, n: int, dim: int, queries: int, per_identity: int = 10) -> FaceSet:
    """A gallery of ``n`` faces of n / ``per_identity`` identities, and ``queries`` probes:
    new faces of identities picked from the gallery's."""
    identities = max(1, n // per_identity)
    directions = random_vectors(rng, identities, dim)
    gallery = faces_around(rng, directions, np.arange(n) % identities)
    whose = rng.integers(0, identities, queries)
    return FaceSet(gallery, faces_around(rng, directions, whose), whose, identities)


def build(spec: CollectionSpec, vectors: Matrix, ids: IdArray) -> IndexState:
    """A collection's index holding ``vectors`` (n, dim) under ``ids`` (n,), added in chunks."""
    state = IndexState(spec, faiss_index.new_index(spec))
    for start in range(0, len(ids), ADD_CHUNK):
        state.add(ids[start : start + ADD_CHUNK], vectors[start : start + ADD_CHUNK])
    return state


def top_ids(state: IndexState, queries: Matrix, k: int) -> IdArray:
    """(m, k) ids of each query's top ``k``, best first (-1 where fewer)."""
    out = np.full((len(queries), k), -1, np.int64)
    for row, hits in enumerate(state.search(queries, k)):
        out[row, : len(hits)] = [hit_id for hit_id, _ in hits]
    return out


def recall_at(got: IdArray, exact: IdArray, k: int) -> float:
    """Mean over queries of |got[:, :k] ∩ exact[:, :k]| / k; both (m, ≥k)."""
    shared = [np.intersect1d(g[:k], e[:k]).size for g, e in zip(got, exact, strict=True)]
    return float(np.mean(shared)) / k


@dataclass(frozen=True)
class Measurement:
    kind: IndexKind
    recall_1: float
    recall_10: float
    add_s: float
    single_ms: float
    """Median time of a one-probe search (nan when none was timed)."""
    batch_ms: float
    """Time of one search of every probe, per probe."""
    memory_mib: float
    right_person: float | None = None
    """Faces only: the share of probes whose best hit is a face of the probe's identity (what a
    recognition answers), whichever face that is."""


def measure(
    gallery: Matrix,
    probes: Matrix,
    kinds: list[IndexKind],
    *,
    singles: int = 200,
    identity_of: Callable[[IdArray], npt.NDArray[np.intp]] | None = None,
    probe_identity: npt.NDArray[np.intp] | None = None,
) -> list[Measurement]:
    """Flat first (the exact answers), then each of ``kinds`` at the spec's defaults.

    With ``identity_of`` (face ids → identities) and ``probe_identity`` (m,), also the share
    of probes answered with the right person.
    """
    ids = np.arange(len(gallery), dtype=np.int64)
    dim = gallery.shape[1]
    exact: IdArray | None = None
    found = []
    for kind in ["flat", *[k for k in kinds if k != "flat"]]:
        began = time.perf_counter()
        state = build(CollectionSpec(dim=dim, index=kind), gallery, ids)  # type: ignore[arg-type]
        add_s = time.perf_counter() - began
        began = time.perf_counter()
        got = top_ids(state, probes, 10)
        batch_ms = (time.perf_counter() - began) * 1000 / len(probes)
        times = []
        for row in range(min(singles, len(probes))):
            began = time.perf_counter()
            state.search(probes[row : row + 1], 10)
            times.append(time.perf_counter() - began)
        if exact is None:
            exact = got
        right = None
        if identity_of is not None and probe_identity is not None:
            right = float(np.mean(identity_of(got[:, 0]) == probe_identity))
        found.append(
            Measurement(
                kind=kind,  # type: ignore[arg-type]
                recall_1=recall_at(got, exact, 1),
                recall_10=recall_at(got, exact, 10),
                add_s=add_s,
                single_ms=float(np.median(times)) * 1000 if times else float("nan"),
                batch_ms=batch_ms,
                memory_mib=faiss_index.memory_bytes(state.index) / 2**20,
                right_person=right,
            )
        )
    return found


def table(name: str, rows: list[Measurement]) -> str:
    """The measurements as a Markdown table; times also as ratios to flat (the first row)."""
    flat = rows[0]
    person = rows[0].right_person is not None
    head = "| kind | recall@1 | recall@10 |" + (" right person |" if person else "")
    head += " 1 probe ms | × flat | batch ms/probe | × flat | add s | index MiB |"
    lines = [f"{name}:", head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r.kind, f"{r.recall_1:.3f}", f"{r.recall_10:.3f}"]
        if person:
            cells.append(f"{r.right_person:.3f}")
        cells += [
            f"{r.single_ms:.2f}",
            f"{r.single_ms / flat.single_ms:.3f}",
            f"{r.batch_ms:.3f}",
            f"{r.batch_ms / flat.batch_ms:.3f}",
            f"{r.add_s:.1f}",
            f"{r.memory_mib:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000, help="gallery vectors")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--kinds", default="ivf,hnsw", help="approximate kinds, comma-separated")
    parser.add_argument("--galleries", default="faces,random", help="faces and/or random")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    kinds: list[IndexKind] = args.kinds.split(",")
    defaults = CollectionSpec(dim=args.dim)
    print(
        f"{args.n} × {args.dim}, {args.queries} probes, defaults: ivf nlist {defaults.nlist} nprobe "
        f"{defaults.nprobe}; hnsw M {defaults.hnsw_m} efConstruction {defaults.ef_construction} "
        f"efSearch {defaults.ef_search}",
        flush=True,
    )
    for name in args.galleries.split(","):
        rng = np.random.default_rng(args.seed)
        if name == "faces":
            faces = face_gallery(rng, args.n, args.dim, args.queries)
            rows = measure(
                faces.gallery,
                faces.probes,
                kinds,
                identity_of=faces.identity_of,
                probe_identity=faces.probe_identity,
            )
        elif name == "random":
            gallery = random_vectors(rng, args.n, args.dim)
            rows = measure(gallery, random_vectors(rng, args.queries, args.dim), kinds)
        else:
            parser.error(f"unknown gallery {name!r}")
        print(table(name, rows), flush=True)


if __name__ == "__main__":
    main()
