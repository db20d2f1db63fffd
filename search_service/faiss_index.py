"""Construction and inspection of the FAISS index behind a collection.

Kinds (all inner product on L2-normalised vectors, so scores are cosines):

* ``flat``: ``IndexIDMap2(IndexFlatIP(d))``, exact.
* ``ivf``: ``IndexIVFFlat`` with its own ids. It needs training, so a new ivf collection
  starts as an exact flat buffer and is trained on its own vectors once it holds
  ``39 * nlist`` of them (faiss's minimum for k-means); until then searches are exact.
* ``hnsw``: ``IndexIDMap2(IndexHNSWFlat(d, M))``. HNSW has no ``remove_ids``: deletes
  are tombstoned by the collection and the graph is rebuilt without them
  (:func:`rebuild_without`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faiss
import numpy as np
from faiss.contrib.inspect_tools import get_invlist

from search_service.schema import CollectionSpec
from search_service.vectors import IdArray, Matrix

CopyIndex = Callable[[faiss.Index], faiss.Index]
_TRAIN_SAMPLE_PER_LIST = 256  # faiss's k-means samples at most 256 points per centroid
_ID_BYTES = 8
ID_MAP_ENTRY_BYTES = 40
"""One entry of ``IndexIDMap2``'s ``std::unordered_map<idx_t, idx_t>``: a 24-byte node, the
allocator's 8 and a bucket pointer (libstdc++)."""


def new_index(spec: CollectionSpec) -> faiss.Index:
    """An empty index for ``spec`` (for ivf: the exact buffer used until trained)."""
    if spec.index == "hnsw":
        graph = faiss.IndexHNSWFlat(spec.dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = spec.ef_construction
        index = faiss.IndexIDMap2(graph)
    else:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(spec.dim))
    apply_search_params(index, spec)
    return index


def apply_search_params(index: faiss.Index, spec: CollectionSpec) -> None:
    """Set the query-time knobs (not all survive write_index/read_index)."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = spec.ef_search
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = spec.nprobe


def is_ivf(index: faiss.Index) -> bool:
    return isinstance(index, faiss.IndexIVF)


def is_hnsw(index: faiss.Index) -> bool:
    return isinstance(index, faiss.IndexIDMap2) and isinstance(
        faiss.downcast_index(index.index), faiss.IndexHNSW
    )


def supports_remove(index: faiss.Index) -> bool:
    return not is_hnsw(index)


def ivf_train_size(spec: CollectionSpec) -> int:
    return 39 * spec.nlist


def maybe_train_ivf(index: faiss.Index, spec: CollectionSpec) -> faiss.Index | None:
    """The trained IVF replacing the flat buffer once it is big enough, else None."""
    if spec.index != "ivf" or is_ivf(index) or index.ntotal < ivf_train_size(spec):
        return None
    ids, vectors = contents(index)
    # index_factory already returns the concrete IndexIVFFlat (and owns the quantizer).
    ivf = faiss.index_factory(spec.dim, f"IVF{spec.nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    sample = vectors
    limit = _TRAIN_SAMPLE_PER_LIST * spec.nlist
    if len(vectors) > limit:
        # Fixed seed: replaying the same log must give the same clustering.
        rows = np.random.default_rng(0).choice(len(vectors), limit, replace=False)
        sample = vectors[np.sort(rows)]
    ivf.train(sample)
    ivf.add_with_ids(vectors, ids)
    apply_search_params(ivf, spec)
    return ivf


def memory_bytes(index: Any) -> int:
    """Bytes held by the index's arrays: vectors, ids, graph links, coarse centroids.

    An estimate from the structures' sizes, read without copying anything (``serialize_index``
    would copy it all): within a few per cent of the serialised size, plus
    :data:`ID_MAP_ENTRY_BYTES` per id for ``IndexIDMap2``'s reverse hash map. Spare vector
    capacity and allocator overhead are not counted.
    """
    if is_ivf(index):
        quantizer = faiss.downcast_index(index.quantizer)
        centroids = quantizer.ntotal * getattr(quantizer, "code_size", 4 * index.d)
        return int(centroids + index.ntotal * (index.code_size + _ID_BYTES))
    inner: Any = faiss.downcast_index(index.index)  # the stubs know neither code_size nor the graph
    ids = index.ntotal * (_ID_BYTES + ID_MAP_ENTRY_BYTES)
    if isinstance(inner, faiss.IndexHNSW):
        graph: Any = inner.hnsw
        links = graph.neighbors.size() * 4 + graph.offsets.size() * 8 + graph.levels.size() * 4
        storage: Any = faiss.downcast_index(inner.storage)
        return int(ids + links + storage.ntotal * storage.code_size)
    return int(ids + inner.ntotal * inner.code_size)


def stored_ids(index: Any) -> IdArray:
    """Every id physically stored (tombstoned ones included); shape (ntotal,)."""
    if is_ivf(index):
        invlists = index.invlists
        parts = [get_invlist(invlists, i)[0] for i in range(index.nlist)]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def contents(index: Any) -> tuple[IdArray, Matrix]:
    """All stored (ids (n,), vectors (n, d)); the vectors are the normalised ones."""
    if is_ivf(index):
        ids_parts, vec_parts = [], []
        for i in range(index.nlist):
            ids, codes = get_invlist(index.invlists, i)
            ids_parts.append(ids.astype(np.int64))
            vec_parts.append(codes.view(np.float32).reshape(-1, index.d))
        return np.concatenate(ids_parts), np.concatenate(vec_parts)
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    if ids.size == 0:
        return ids, np.empty((0, index.d), np.float32)
    return ids, index.index.reconstruct_n(0, index.ntotal)


def rebuild_without(index: faiss.Index, spec: CollectionSpec, drop: IdArray) -> faiss.Index:
    """A fresh index of the same kind holding every stored vector except ``drop``."""
    ids, vectors = contents(index)
    keep = ~np.isin(ids, drop)
    if is_ivf(index):
        fresh = faiss.clone_index(index)  # clone_index returns the concrete class
        fresh.reset()  # keeps the trained quantizer
    else:
        fresh = new_index(spec)
    if keep.any():
        fresh.add_with_ids(np.ascontiguousarray(vectors[keep]), ids[keep])
    apply_search_params(fresh, spec)
    return fresh


def search(index: faiss.Index, queries: Matrix, k: int) -> tuple[Matrix, IdArray]:
    """Top ``k`` of each query: scores (m, k) float32 and ids (m, k) int64 (-1 = none)."""
    k = max(1, min(k, index.ntotal)) if index.ntotal else 1
    if index.ntotal == 0:
        m = len(queries)
        return np.full((m, 1), -np.inf, np.float32), np.full((m, 1), -1, np.int64)
    scores, ids = index.search(queries, k)
    return scores, ids
