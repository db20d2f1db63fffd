"""The primary CPU index of a collection with its id bookkeeping (synchronous).

Methods are called from worker threads. Searches take the read side of the lock; every
mutation of the FAISS index takes the write side, so searches never see an index being
modified. Callers serialise mutations themselves (the collection's writer lock), so the
Python-side sets are only mutated by one writer at a time, under the write side too.
"""

from __future__ import annotations

import faiss
import numpy as np

from search_service import faiss_index
from search_service.checksum import digest_of_ids, format_checksum
from search_service.persistence import CollectionFiles
from search_service.replica import Hits, top_live
from search_service.rwlock import ReadWriteLock
from search_service.schema import CollectionSpec
from search_service.vectors import IdArray, Matrix

_MASK = (1 << 64) - 1


class IndexState:
    def __init__(self, spec: CollectionSpec, index: faiss.Index) -> None:
        self.spec = spec
        self.index = index
        self.lock = ReadWriteLock()
        faiss_index.apply_search_params(index, spec)
        ids = faiss_index.stored_ids(index)
        self.live: set[int] = set(ids.tolist())
        self.digest = digest_of_ids(ids)
        # Deleted ids still inside an index without remove_ids (HNSW).
        self.tombstones: set[int] = set()
        self._dead: IdArray = np.empty(0, np.int64)

    @property
    def count(self) -> int:
        return len(self.live)

    @property
    def checksum(self) -> str:
        return format_checksum(len(self.live), self.digest)

    def present(self, ids: IdArray) -> IdArray:
        """The subset of ``ids`` (n,) that is currently in the collection."""
        live = self.live
        return ids[np.fromiter((i in live for i in ids.tolist()), bool, ids.size)]

    def ids_after(self, after: int, limit: int) -> tuple[IdArray, bool]:
        """The smallest ``limit`` live ids above ``after``, ascending (k,), and whether
        more follow."""
        # The read side keeps a writer from resizing the set while it is copied.
        with self.lock.read():
            ids = np.fromiter(self.live, np.int64, len(self.live))
        ids = ids[ids > after]
        more = ids.size > limit
        if more:
            ids = np.partition(ids, limit - 1)[:limit]
        return np.sort(ids), more

    def add(self, ids: IdArray, vectors: Matrix) -> bool:
        """Add unit ``vectors`` (n, dim) under new ``ids`` (n,); True if the index object
        was replaced (an ivf collection just trained)."""
        if self.tombstones and not self.tombstones.isdisjoint(ids.tolist()):
            # A re-added id must not meet its own tombstoned ghost in the graph.
            self.compact()
        with self.lock.write():
            self.index.add_with_ids(vectors, ids)
            self.live.update(ids.tolist())
            self.digest = (self.digest + digest_of_ids(ids)) & _MASK
        trained = faiss_index.maybe_train_ivf(self.index, self.spec)
        if trained is None:
            return False
        with self.lock.write():
            self.index = trained
        return True

    def delete(self, ids: IdArray) -> None:
        """Remove ``ids`` (n,), all of which must be present."""
        with self.lock.write():
            if faiss_index.supports_remove(self.index):
                self.index.remove_ids(ids)  # type: ignore[arg-type]  # numpy overload
            else:
                self.tombstones.update(ids.tolist())
                self._dead = np.fromiter(self.tombstones, np.int64, len(self.tombstones))
            self.live.difference_update(ids.tolist())
            self.digest = (self.digest - digest_of_ids(ids)) & _MASK

    def compact(self) -> None:
        """Rebuild the index without its tombstones, aside, then swap it in."""
        if not self.tombstones:
            return
        with self.lock.read():
            if self.live or faiss_index.is_ivf(self.index):
                fresh = faiss_index.rebuild_without(self.index, self.spec, self._dead)
            else:
                # Every stored vector is dead (a cleared gallery): nothing to copy out of it.
                fresh = faiss_index.new_index(self.spec)
        with self.lock.write():
            self.index = fresh
            self.tombstones.clear()
            self._dead = np.empty(0, np.int64)

    def search(self, queries: Matrix, k: int) -> Hits:
        """Top ``k`` live hits of each unit query (m, dim), best first."""
        with self.lock.read():
            dead = self._dead
            scores, ids = faiss_index.search(self.index, queries, k + dead.size)
        return top_live(scores, ids, dead, k)

    def tombstone_ids(self) -> IdArray:
        return self._dead.copy()

    def copy_with(self, copy: faiss_index.CopyIndex) -> faiss.Index:
        with self.lock.read():
            return copy(self.index)

    def write_snapshot(self, files: CollectionFiles, seq: int) -> None:
        with self.lock.read():
            files.write_snapshot(self.index, seq)
