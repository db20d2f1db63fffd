"""The Milvus search backend: Milvus Lite in a file, or a Milvus server or cluster by URI.

It answers as :class:`orchestrator.clients.search.SearchClient` does (the contract is
:class:`orchestrator.clients.search_backend.SearchBackend`), so the API answers the same
with either backend. pymilvus's ``MilvusClient`` is blocking: each call runs in a thread
with a timeout (its ``AsyncMilvusClient`` is marked experimental and has no query
iterator, which listing ids needs).

* Consistency: collections are created with, and every search and query asks for,
  ``Strong`` consistency, so a search right after an add or a delete sees it (Milvus's
  default, bounded staleness, may not: an enrolled face answered "unknown").
* Writes to one collection are serialised in this process: Milvus Lite does not support
  concurrent writers to a collection, and the presence check that refuses duplicate ids
  (Milvus itself keeps them) must not race an add of the same id. Adds are upserts, so two
  processes adding the same face with the same embedding leave one entity.
* Milvus Lite is embedded in the process that opens its file, and one process at a time
  may: ``facerec up`` serves the file to all its processes (:mod:`orchestrator.runtime.milvus_lite`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar

import numpy as np
import numpy.typing as npt

from orchestrator.clients.milvus_errors import problem, search_error
from orchestrator.clients.milvus_index import (
    ID_FIELD,
    MAX_ROWS_PER_CALL,
    VECTOR_FIELD,
    facerec_name,
    index_bytes,
    index_params,
    milvus_name,
    properties,
    search_params,
    spec_of,
)
from orchestrator.clients.search import SearchServiceError
from search_service.checksum import checksum_of_ids
from search_service.errors import InvalidInput
from search_service.schema import MAX_IDS_PAGE, MAX_K, CollectionInfo, CollectionSpec, Health, Hit
from search_service.vectors import as_ids, normalise

T = TypeVar("T")
log = logging.getLogger(__name__)
NOT_LOADED = 101
"""Milvus's code for a collection not loaded (``ErrCollectionNotLoaded``): Milvus Lite
leaves every indexed collection released when it restarts."""
RECONNECT_OPTIONS = {"grpc.use_local_subchannel_pool": 1, "grpc.max_reconnect_backoff_ms": 1000}
"""pymilvus answers UNAVAILABLE by reconnecting on a new channel; by default gRPC shares the
old one's subchannel with it, and that subchannel's backoff (growing to 2 minutes while the
server was down) fails the new channel at once: a restarted Milvus answered 503 for seconds."""
ITERATOR_BATCH = 16_384
"""Milvus's largest query window."""


def _quiet_pymilvus() -> None:
    """pymilvus logs every failed call with its stack at ERROR before raising it, and its
    query iterator warns that Milvus Lite has no MVCC timestamp: this module maps the one and
    needs no timestamp. Set after pymilvus is imported: its import configures its loggers."""
    logging.getLogger("pymilvus.decorators").setLevel(logging.CRITICAL)
    logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)


class MilvusSearch:
    def __init__(
        self, uri: str, *, token: str | None = None, timeout: float = 10.0, gpu_index: bool = False
    ) -> None:
        self.uri = uri
        self.timeout = timeout
        self.gpu_index = gpu_index
        self._token = token or ""
        self._client: Any = None
        self._connecting = asyncio.Lock()
        self._writers: dict[str, asyncio.Lock] = {}
        self._specs: dict[str, CollectionSpec] = {}

    @property
    def is_lite(self) -> bool:
        return self.uri.endswith(".db")

    @property
    def device(self) -> str:
        return "gpu" if self.gpu_index else "cpu"

    # --- calls -----------------------------------------------------------------------

    def _fail(self, error: Exception) -> NoReturn:
        raise search_error(error, self.uri) from error

    async def _connected(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._connecting:
            if self._client is None:
                from pymilvus import MilvusClient

                _quiet_pymilvus()
                try:
                    self._client = await asyncio.wait_for(
                        asyncio.to_thread(
                            MilvusClient,
                            uri=self.uri,
                            token=self._token,
                            timeout=self.timeout,
                            grpc_options=RECONNECT_OPTIONS,
                        ),
                        self.timeout + 5,
                    )
                except Exception as error:
                    if not self.is_lite:
                        self._fail(error)
                    held = ConnectionError(
                        f"Milvus Lite could not open {self.uri} ({error}): one process at a time may "
                        "(is another facerec process using it? `facerec up` serves it to all of them)"
                    )
                    self._fail(held)
        return self._client

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        client = await self._connected()
        call = functools.partial(getattr(client, method), *args, timeout=self.timeout, **kwargs)
        return await self._in_thread(call, args[0] if args else None)

    async def _in_thread(self, call: Callable[[], T], stored: str | None = None) -> T:
        """``call`` in a thread; once more after loading collection ``stored`` if it was released."""
        for attempt in (1, 2):
            try:
                # pymilvus bounds each call (and its retries) by the timeout; this bounds the thread.
                return await asyncio.wait_for(asyncio.to_thread(call), self.timeout + 5)
            except SearchServiceError:
                raise
            except Exception as error:
                if attempt == 1 and stored is not None and getattr(error, "code", None) == NOT_LOADED:
                    client = await self._connected()
                    load = functools.partial(client.load_collection, stored, timeout=self.timeout)
                    await self._in_thread(load)
                    continue
                self._fail(error)
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def _writing(self, name: str) -> AsyncIterator[None]:
        async with self._writers.setdefault(name, asyncio.Lock()):
            yield

    async def _spec(self, name: str) -> CollectionSpec:
        spec = self._specs.get(name)
        if spec is None:
            described = await self._call("describe_collection", milvus_name(name))
            spec = spec_of(described)
            if spec is None:
                detail = f"Milvus collection {milvus_name(name)!r} was not made by facerec"
                raise SearchServiceError(
                    409, problem(409, "foreign-collection", "Conflict", detail), self.uri
                )
            self._specs[name] = spec
        return spec

    async def _present(self, stored: str, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        found: list[int] = []
        for start in range(0, ids.size, MAX_ROWS_PER_CALL):
            chunk = ids[start : start + MAX_ROWS_PER_CALL].tolist()
            rows = await self._call(
                "query",
                stored,
                filter=f"{ID_FIELD} in {chunk}",
                output_fields=[ID_FIELD],
                consistency_level="Strong",
            )
            found.extend(int(row[ID_FIELD]) for row in rows)
        return np.unique(np.asarray(found, dtype=np.int64))

    # --- the SearchBackend operations ----------------------------------------------------

    async def create_collection(self, name: str, spec: CollectionSpec) -> CollectionInfo:
        from pymilvus import DataType, MilvusClient

        stored = milvus_name(name)
        if not await self._call("has_collection", stored):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
            schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=spec.dim)
            client = await self._connected()
            params = client.prepare_index_params()
            params.add_index(
                field_name=VECTOR_FIELD, metric_type="IP", **index_params(spec, gpu=self.gpu_index)
            )
            try:
                await self._call(
                    "create_collection",
                    stored,
                    schema=schema,
                    index_params=params,
                    consistency_level="Strong",
                    properties=properties(spec),
                )
                log.info("created Milvus collection %s (%s)", stored, spec.model_dump())
            except SearchServiceError:
                if not await self._call("has_collection", stored):  # not made by another replica meanwhile
                    raise
        self._specs.pop(name, None)
        existing = await self._spec(name)
        if existing != spec:
            detail = f"collection {name!r} exists with a different spec: {existing.model_dump()}"
            raise SearchServiceError(409, problem(409, "collection-exists", "Conflict", detail), self.uri)
        return await self.info(name)

    async def drop_collection(self, name: str, *, missing_ok: bool = False) -> None:
        stored = milvus_name(name)
        async with self._writing(name):
            if not await self._call("has_collection", stored):
                if missing_ok:
                    return
                detail = f"collection {name!r} does not exist"
                raise SearchServiceError(
                    404, problem(404, "unknown-collection", "Not found", detail), self.uri
                )
            await self._call("drop_collection", stored)
            self._specs.pop(name, None)
        log.info("dropped Milvus collection %s", stored)

    async def add(self, name: str, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> int:
        """Add ``vectors`` (n, dim) under non-negative ``ids`` (n,); durable and searchable on return."""
        spec = await self._spec(name)
        try:
            id_arr = as_ids(np.asarray(ids, dtype=np.int64).reshape(-1).tolist())
            rows = np.asarray(vectors, dtype=np.float32)
            if rows.size != id_arr.size * spec.dim:
                raise InvalidInput(
                    f"{id_arr.size} ids and {rows.size} values, the collection's dim is {spec.dim}",
                    slug="dimension-mismatch",
                )
            unit = normalise(rows.reshape(id_arr.size, spec.dim))
        except InvalidInput as error:
            self._fail(error)
        if id_arr.size and id_arr.min() < 0:
            self._fail(InvalidInput(f"ids must be non-negative: {id_arr[id_arr < 0][:10].tolist()}"))
        stored = milvus_name(name)
        async with self._writing(name):
            clash = await self._present(stored, id_arr)
            if clash.size:
                detail = f"ids already in {name!r}: {clash[:10].tolist()}"
                raise SearchServiceError(409, problem(409, "duplicate-ids", "Conflict", detail), self.uri)
            for start in range(0, id_arr.size, MAX_ROWS_PER_CALL):
                end = start + MAX_ROWS_PER_CALL
                data = [
                    {ID_FIELD: int(i), VECTOR_FIELD: v}
                    for i, v in zip(id_arr[start:end], unit[start:end], strict=True)
                ]
                await self._call("upsert", stored, data=data)
        return int(id_arr.size)

    async def delete(self, name: str, ids: npt.ArrayLike) -> int:
        """Delete ``ids`` (n,); unknown ids are ignored. Returns how many were deleted."""
        id_arr = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        stored = milvus_name(name)
        await self._spec(name)
        async with self._writing(name):
            gone = await self._present(stored, id_arr)
            for start in range(0, gone.size, MAX_ROWS_PER_CALL):
                await self._call("delete", stored, ids=gone[start : start + MAX_ROWS_PER_CALL].tolist())
        return int(gone.size)

    async def search(self, name: str, queries: npt.ArrayLike, k: int) -> list[list[Hit]]:
        """Top ``k`` hits (best first, ties by id) for each query of ``queries`` (m, dim)."""
        spec = await self._spec(name)
        try:
            rows = np.atleast_2d(np.asarray(queries, dtype=np.float32))
            if not 1 <= k <= MAX_K:
                raise InvalidInput(f"k must be in [1, {MAX_K}], not {k}")
            if rows.shape[1] != spec.dim:
                raise InvalidInput(f"queries have {rows.shape[1]} values, the collection's dim is {spec.dim}")
            unit = normalise(rows)
        except InvalidInput as error:
            self._fail(error)
        if not len(unit):
            return []
        answers = await self._call(
            "search",
            milvus_name(name),
            data=list(unit),
            anns_field=VECTOR_FIELD,
            limit=k,
            search_params=search_params(spec, k, gpu=self.gpu_index),
            output_fields=[ID_FIELD],
            consistency_level="Strong",
        )
        return [
            sorted(
                (Hit(id=int(h["id"]), score=float(h["distance"])) for h in row),
                key=lambda h: (-h.score, h.id),
            )
            for row in answers
        ]

    async def ids(self, name: str, *, page: int = MAX_IDS_PAGE) -> npt.NDArray[np.int64]:
        """Every id of the collection, ascending: (n,) int64; not a snapshot (as the service's)."""
        client = await self._connected()
        stored = milvus_name(name)

        def walk() -> list[int]:
            found: list[int] = []
            iterator = client.query_iterator(
                stored,
                batch_size=min(page, ITERATOR_BATCH),
                filter="",
                output_fields=[ID_FIELD],
                timeout=self.timeout,
                consistency_level="Strong",
            )
            try:
                while batch := iterator.next():
                    found.extend(int(row[ID_FIELD]) for row in batch)
            finally:
                iterator.close()
            return found

        await self._spec(name)
        return np.sort(np.asarray(await self._in_thread(walk, stored), dtype=np.int64))

    async def info(self, name: str) -> CollectionInfo:
        """The count and the checksum come from one walk over the ids, so they agree."""
        spec = await self._spec(name)
        ids = await self.ids(name)
        return CollectionInfo(
            name=name,
            dim=spec.dim,
            count=int(ids.size),
            checksum=checksum_of_ids(ids),
            index=spec.index,
            device=self.device,
            memory_bytes=index_bytes(
                spec.index, int(ids.size), spec.dim, hnsw_m=spec.hnsw_m, nlist=spec.nlist
            ),
        )

    async def flush(self, name: str) -> None:
        """Seal what was written into indexed segments. Not needed for correctness (searches are
        Strong); Milvus seals by size and time by itself, Milvus Lite by size, and searches its
        unsealed rows by a slow scan: the benchmark flushes after loading a gallery."""
        async with self._writing(name):
            await self._call("flush", milvus_name(name))

    async def health(self) -> list[Health]:
        names = await self._call("list_collections")
        ours = [n for n in names if facerec_name(n) is not None]
        return [Health(status="ok", shard=None, collections=len(ours), device=self.device)]

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.close)
