"""Wire schema of the search service: the contract with the orchestrator.

No FAISS import here (the orchestrator imports this module). Vectors travel either as
JSON lists of floats (shape (n, dim)) or as one base64 string of little-endian float32
in row-major order (``n * dim * 4`` bytes, ``n`` inferred from the collection's dim);
see :mod:`search_service.vectors`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

IndexKind = Literal["flat", "ivf", "hnsw"]
Metric = Literal["ip"]
#: faiss reserves -1 for "no result"; shard routing needs ``id % n`` to be meaningful.
VectorId = Annotated[int, Field(ge=0, le=2**63 - 1)]
#: (n, dim) floats, or base64 of little-endian float32 (n * dim values, row-major).
Vectors = list[list[float]] | str
MAX_K = 1024
MAX_IDS_PAGE = 100_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollectionSpec(_Model):
    """Body of ``PUT /collections/{name}``; the tuning fields are optional extras."""

    dim: int = Field(ge=1, le=8192)
    metric: Metric = "ip"
    index: IndexKind = "flat"
    nlist: int = Field(default=256, ge=1, le=1 << 20, description="ivf: inverted lists")
    nprobe: int = Field(
        default=16, ge=1, le=1 << 20, description="ivf: lists searched; a GPU shard refuses more than 2048"
    )
    hnsw_m: int = Field(default=32, ge=4, le=256, description="hnsw: graph degree")
    ef_construction: int = Field(default=80, ge=8, le=4096)
    ef_search: int = Field(default=64, ge=8, le=4096)


class AddVectors(_Model):
    """Body of ``POST /collections/{name}/vectors``: ids shape (n,), vectors (n, dim)."""

    ids: list[VectorId]
    vectors: Vectors


class DeleteVectors(_Model):
    """Body of ``DELETE /collections/{name}/vectors``; unknown ids are ignored."""

    ids: list[VectorId]


class SearchRequest(_Model):
    """Body of ``POST /collections/{name}/search``: queries (m, dim), top ``k`` each."""

    vectors: Vectors
    k: int = Field(default=10, ge=1, le=MAX_K)


class Added(_Model):
    added: int


class Deleted(_Model):
    deleted: int


class Hit(_Model):
    id: int
    score: float


class SearchResults(_Model):
    """One list per query, best first (highest cosine), at most ``k`` hits each."""

    results: list[list[Hit]]


class IdsQuery(_Model):
    """Query of ``GET /collections/{name}/ids``: at most ``limit`` ids above ``after``."""

    after: int = Field(default=-1, ge=-1, le=2**63 - 1)
    limit: int = Field(default=10_000, ge=1, le=MAX_IDS_PAGE)


class IdPage(_Model):
    """A collection's ids above the query's ``after``, ascending. ``next_after`` is the
    ``after`` of the next page, null on the last one.

    Each page is read at one instant; a walk over several is not a snapshot: an id
    written between two pages is listed only if it lies above the cursor.
    """

    ids: list[int]
    next_after: int | None


class CollectionInfo(_Model):
    """``checksum`` is defined in :mod:`search_service.checksum`; ``device`` is
    ``"cpu"`` or ``"gpu:N"`` (comma-joined when shards differ)."""

    name: str
    dim: int
    count: int
    checksum: str
    index: IndexKind
    device: str
    memory_bytes: int | None = Field(
        default=None,
        ge=0,
        description="the FAISS index's arrays on the CPU (vectors, ids, graph, centroids), an "
        "estimate; summed over shards; null from a service too old to say",
    )


class Health(_Model):
    status: Literal["ok"]
    shard: str | None
    collections: int
    device: str | None = Field(
        default=None,
        description="where this shard searches: cpu or gpu:N (cpu when gpu-or-cpu fell back); null "
        "from a service too old to say",
    )


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
