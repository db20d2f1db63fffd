"""What the orchestrator asks of a search backend: the operations both backends offer.

Two backends satisfy :class:`SearchBackend`: :class:`orchestrator.clients.search.SearchClient`
(this project's FAISS search service, one machine or a few shards) and
:class:`orchestrator.clients.milvus.MilvusSearch` (Milvus Lite in a file, or a Milvus
server or cluster). Both answer alike, so enrolment, recognition, rollouts, reconcile and
index rebuilds do not know which one they talk to:

* collections are named as the orchestrator names them (``arcface-v1-g1``), one per model
  version and index generation, created from a :class:`CollectionSpec`; creating one that
  exists with the same spec is a no-op, with another spec a 409 ``collection-exists``;
* vectors are L2-normalised on the way in and scored by inner product (cosine), best
  first, ties by id;
* an add of an id already present is refused whole (409 ``duplicate-ids``), a delete of an
  unknown id is ignored, and a search right after either sees it;
* ``info`` gives the count and the id checksum of :mod:`search_service.checksum`, which
  reconcile compares with the database;
* errors are :class:`SearchServiceError` carrying an RFC 9457 problem, and
  :class:`SearchUnavailable` (503) when the backend cannot be reached in time.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from search_service.schema import MAX_IDS_PAGE, CollectionInfo, CollectionSpec, Health, Hit


class SearchBackend(Protocol):
    async def create_collection(self, name: str, spec: CollectionSpec) -> CollectionInfo: ...

    async def drop_collection(self, name: str, *, missing_ok: bool = False) -> None: ...

    async def add(self, name: str, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> int:
        """Add ``vectors`` (n, dim) under non-negative ``ids`` (n,); durable and searchable on return."""
        ...

    async def delete(self, name: str, ids: npt.ArrayLike) -> int:
        """Delete ``ids`` (n,); unknown ids are ignored. Returns how many were deleted."""
        ...

    async def search(self, name: str, queries: npt.ArrayLike, k: int) -> list[list[Hit]]:
        """Top ``k`` hits (best first) for each query of ``queries`` (m, dim)."""
        ...

    async def ids(self, name: str, *, page: int = MAX_IDS_PAGE) -> npt.NDArray[np.int64]:
        """Every id of the collection, ascending: (n,) int64."""
        ...

    async def info(self, name: str) -> CollectionInfo: ...

    async def health(self) -> list[Health]: ...

    async def aclose(self) -> None: ...
