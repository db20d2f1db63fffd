"""How the project's collections look in Milvus: names, schema, index kinds and their memory.

Pure code (no pymilvus import): the Milvus backend (:mod:`orchestrator.clients.milvus`), the
benchmark and the sizing table in the README use it.

* Names: Milvus allows letters, digits and ``_`` and a letter or ``_`` first; the search
  service's names (``arcface-v1-g1``) also have ``-`` and ``.``. A collection is stored as
  ``facerec_`` + the name with ``_`` → ``_u``, ``-`` → ``_h``, ``.`` → ``_d`` (reversible).
* Kinds: the ``FACEREC_INDEX__*`` kinds map to Milvus index types, all with the ``IP`` metric
  on L2-normalised vectors (scores are cosines, as in the FAISS service): ``flat`` → FLAT,
  ``ivf`` → IVF_FLAT (nlist, nprobe), ``hnsw`` → HNSW (M, efConstruction, ef). With GPU
  indexes (a Milvus GPU image; not Milvus Lite): GPU_BRUTE_FORCE, GPU_IVF_FLAT and GPU_CAGRA.
"""

from __future__ import annotations

import re
from typing import Any

from search_service.schema import CollectionSpec, IndexKind

PREFIX = "facerec_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""The search service's collection names (:mod:`search_service.registry`)."""
SPEC_PROPERTY = "facerec.spec"
"""The collection property holding its :class:`CollectionSpec` as JSON (Milvus Lite keeps
properties, not descriptions)."""
_ESCAPES = {"_": "_u", "-": "_h", ".": "_d"}
_UNESCAPES = {v[1]: k for k, v in _ESCAPES.items()}

ID_FIELD = "id"
VECTOR_FIELD = "vector"
MAX_ROWS_PER_CALL = 10_000
"""Rows per insert, and ids per ``id in [...]`` expression: 20 MB of 512-d vectors, well under
the 64 MB a Milvus proxy accepts by default, and under its 16,384-row query window."""


def milvus_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"collection name {name!r} must match {NAME.pattern}")
    return PREFIX + "".join(_ESCAPES.get(c, c) for c in name)


def facerec_name(stored: str) -> str | None:
    """The collection name behind a Milvus name; None for a collection that is not ours."""
    if not stored.startswith(PREFIX):
        return None
    text, out, i = stored[len(PREFIX) :], [], 0
    while i < len(text):
        if text[i] == "_":
            if i + 1 >= len(text) or text[i + 1] not in _UNESCAPES:
                return None
            out.append(_UNESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def properties(spec: CollectionSpec) -> dict[str, str]:
    return {SPEC_PROPERTY: spec.model_dump_json()}


def spec_of(described: dict[str, Any]) -> CollectionSpec | None:
    """The spec of a collection from ``describe_collection``; None if it is not ours."""
    text = (described.get("properties") or {}).get(SPEC_PROPERTY)
    return CollectionSpec.model_validate_json(text) if text else None


def index_params(spec: CollectionSpec, *, gpu: bool = False) -> dict[str, Any]:
    """``index_type``, ``metric_type`` and build ``params`` of the collection's vector index."""
    kind: IndexKind = spec.index
    if kind == "ivf":
        return {"index_type": "GPU_IVF_FLAT" if gpu else "IVF_FLAT", "params": {"nlist": spec.nlist}}
    if kind == "hnsw" and gpu:
        # CAGRA's graph plays HNSW's bottom layer, whose nodes have 2 * M links.
        degree = 2 * spec.hnsw_m
        return {
            "index_type": "GPU_CAGRA",
            "params": {"graph_degree": degree, "intermediate_graph_degree": 2 * degree},
        }
    if kind == "hnsw":
        return {"index_type": "HNSW", "params": {"M": spec.hnsw_m, "efConstruction": spec.ef_construction}}
    return {"index_type": "GPU_BRUTE_FORCE" if gpu else "FLAT", "params": {}}


def search_params(spec: CollectionSpec, k: int, *, gpu: bool = False) -> dict[str, Any]:
    """The query-time knobs; Milvus refuses an HNSW ``ef`` or a CAGRA ``itopk_size`` below ``k``."""
    params: dict[str, Any] = {}
    if spec.index == "ivf":
        params = {"nprobe": min(spec.nprobe, spec.nlist)}
    elif spec.index == "hnsw" and gpu:
        params = {"itopk_size": -(-max(spec.ef_search, k) // 32) * 32}
    elif spec.index == "hnsw":
        params = {"ef": max(spec.ef_search, k)}
    return {"metric_type": "IP", "params": params}


def index_bytes(kind: IndexKind, count: int, dim: int, *, hnsw_m: int = 32, nlist: int = 256) -> int:
    """Memory of a collection's vector index and ids, an estimate (the README's sizing table).

    flat: ``n·(4d + 8)``: float32 vectors and int64 ids. hnsw adds its graph's links,
    ``n·2M·4`` (2M int32 neighbours a vector in the bottom layer; the upper layers add ~1/M
    more). ivf (IVF_FLAT): the flat vectors plus ``nlist·4d`` of centroids.
    """
    raw = count * (4 * dim + 8)
    if kind == "hnsw":
        return raw + count * 2 * hnsw_m * 4
    if kind == "ivf":
        return raw + nlist * 4 * dim
    return raw
