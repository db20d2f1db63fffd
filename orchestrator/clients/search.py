"""Async client of the search service, over one shard or several (orchestrator side).

Sharding: with N shard URLs, shard ``i`` owns the ids with ``id % N == i`` (start each
service with ``--shard i/N``). Adds and deletes are split by owner and sent to the
owning shards concurrently; a search goes to every shard concurrently and the per-query
hits are merged by score (ties by id) into the global top ``k``. Vectors travel as
base64 float32.

Collection info is combined: counts add up, and checksums combine because the
service's checksum is ``"<count>:<digest>"`` with ``digest = sum(splitmix64(id)) mod
2**64`` (:mod:`search_service.checksum`), which is order-independent and additive over
disjoint shards. The orchestrator compares it with ``checksum_of_ids(face ids in the
database)`` to reconcile at start-up.

Every call has a timeout (the client's ``httpx.Timeout``); an unreachable shard or a
timeout raises :class:`SearchUnavailable`, an error answer :class:`SearchServiceError`.
Searches, one per recognised image, go to plain-HTTP shards without httpx
(:mod:`orchestrator.clients.keepalive_http`): it cost the orchestrator more CPU than the
search service spent answering.
Every call carries ``Authorization: Bearer <token>`` when a token is given (the shards'
``FACEREC_SEARCH_TOKEN``); a wrong or missing one is a 401 :class:`SearchServiceError`.
"""

from __future__ import annotations

import asyncio
import heapq
import json
from collections.abc import Awaitable, Sequence
from http.client import responses as REASONS
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import numpy as np
import numpy.typing as npt

from orchestrator.clients.keepalive_http import KeepAliveClient
from search_service.checksum import combine_checksums
from search_service.schema import MAX_IDS_PAGE, CollectionInfo, CollectionSpec, Health, Hit, IdPage
from search_service.vectors import encode_vectors

T = TypeVar("T")
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=2.0)


class SearchServiceError(Exception):
    """An error answer (RFC 9457 problem) from a search shard."""

    def __init__(self, status: int, problem: dict[str, Any], url: str) -> None:
        self.status = status
        self.problem = problem
        self.url = url
        super().__init__(f"{url}: {status} {problem.get('title')}: {problem.get('detail')}")


class SearchUnavailable(SearchServiceError):
    """A shard could not be reached or did not answer in time."""


def merge_hits(per_shard: Sequence[Sequence[Sequence[Hit]]], k: int) -> list[list[Hit]]:
    """Global top ``k`` per query from each shard's best-first hits.

    ``per_shard[s][q]`` are shard ``s``'s hits for query ``q``.
    """
    if not per_shard:
        return []
    merged = []
    for q in range(len(per_shard[0])):
        candidates = (hit for shard in per_shard for hit in shard[q])
        merged.append(heapq.nsmallest(k, candidates, key=lambda h: (-h.score, h.id)))
    return merged


def _unavailable(exc: Exception, url: str) -> SearchUnavailable:
    """A shard not reached, or not answering in time."""
    return SearchUnavailable(503, {"title": type(exc).__name__, "detail": str(exc)}, url)


def _answered_error(status: int, reason: str, body: bytes, url: str) -> SearchServiceError:
    """An error answer: the shard's problem, or its first characters when it sent none."""
    try:
        problem = json.loads(body)
    except ValueError:
        problem = {"title": reason, "detail": body.decode(errors="replace")[:200]}
    return SearchServiceError(status, problem, url)


class SearchClient:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        token: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one search service URL is needed")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._shards = [
            httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, transport=transport)
            for url in urls
        ]
        # Searches, the hot path, skip httpx on plain HTTP (a given transport is the tests').
        limits = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._searchers = (
            [
                KeepAliveClient(
                    url,
                    headers,
                    timeout_s=limits.read or DEFAULT_TIMEOUT.read or 10.0,
                    connect_timeout_s=limits.connect or DEFAULT_TIMEOUT.connect or 2.0,
                )
                for url in urls
            ]
            if transport is None and all(url.startswith("http://") for url in urls)
            else None
        )

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    async def aclose(self) -> None:
        await asyncio.gather(
            *(client.aclose() for client in self._shards),
            *(searcher.aclose() for searcher in self._searchers or []),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _call(
        self, shard: int, method: str, path: str, json: Any = None, params: dict[str, int] | None = None
    ) -> httpx.Response:
        client = self._shards[shard]
        try:
            response = await client.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:  # includes timeouts
            raise _unavailable(exc, str(client.base_url)) from exc
        if response.is_error:
            raise _answered_error(
                response.status_code, response.reason_phrase, response.content, str(response.url)
            )
        return response

    async def _all(self, calls: Sequence[Awaitable[T]]) -> list[T]:
        return list(await asyncio.gather(*calls))

    def _owners(self, ids: npt.NDArray[np.int64]) -> list[npt.NDArray[np.intp]]:
        """Row indices of ``ids`` owned by each shard."""
        owner = ids % len(self._shards)
        return [np.flatnonzero(owner == s) for s in range(len(self._shards))]

    async def create_collection(self, name: str, spec: CollectionSpec) -> CollectionInfo:
        body = spec.model_dump()
        await self._all([self._call(s, "PUT", f"/collections/{name}", body) for s in range(self.shard_count)])
        return await self.info(name)

    async def drop_collection(self, name: str, *, missing_ok: bool = False) -> None:
        """Drop ``name`` on every shard; with ``missing_ok`` a shard without it is fine."""

        async def drop(shard: int) -> None:
            try:
                await self._call(shard, "DELETE", f"/collections/{name}")
            except SearchServiceError as error:
                if not (missing_ok and error.status == 404):
                    raise

        await self._all([drop(s) for s in range(self.shard_count)])

    async def add(self, name: str, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> int:
        """Add ``vectors`` (n, dim) under non-negative ``ids`` (n,); durable on return."""
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        vec_arr = np.asarray(vectors, dtype=np.float32).reshape(len(id_arr), -1)
        calls = [
            self._call(
                s,
                "POST",
                f"/collections/{name}/vectors",
                {"ids": id_arr[rows].tolist(), "vectors": encode_vectors(vec_arr[rows])},
            )
            for s, rows in enumerate(self._owners(id_arr))
            if rows.size
        ]
        return sum(int(r.json()["added"]) for r in await self._all(calls))

    async def delete(self, name: str, ids: npt.ArrayLike) -> int:
        """Delete ``ids`` (n,); unknown ids are ignored. Returns how many were deleted."""
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        calls = [
            self._call(s, "DELETE", f"/collections/{name}/vectors", {"ids": id_arr[rows].tolist()})
            for s, rows in enumerate(self._owners(id_arr))
            if rows.size
        ]
        return sum(int(r.json()["deleted"]) for r in await self._all(calls))

    async def search(self, name: str, queries: npt.ArrayLike, k: int) -> list[list[Hit]]:
        """Top ``k`` hits (best first) for each query of ``queries`` (m, dim)."""
        body = {"vectors": encode_vectors(np.atleast_2d(np.asarray(queries, np.float32))), "k": k}
        path = f"/collections/{name}/search"
        answers = await self._all([self._post(s, path, body) for s in range(self.shard_count)])
        per_shard = [
            [[Hit(id=h["id"], score=h["score"]) for h in row] for row in a["results"]] for a in answers
        ]
        return merge_hits(per_shard, k)

    async def _post(self, shard: int, path: str, body: Any) -> Any:
        """The JSON answer to a POST that is safe to repeat, as ``_call`` answers and fails."""
        if self._searchers is None:
            return (await self._call(shard, "POST", path, body)).json()
        searcher = self._searchers[shard]
        try:
            status, answer = await searcher.post(path, json.dumps(body, separators=(",", ":")).encode())
        except (ConnectionError, TimeoutError) as exc:
            raise _unavailable(exc, searcher.base_url) from exc
        if status >= 400:
            raise _answered_error(status, REASONS.get(status, ""), answer, searcher.base_url + path)
        return json.loads(answer)

    async def ids(self, name: str, *, page: int = MAX_IDS_PAGE) -> npt.NDArray[np.int64]:
        """Every id of the collection over all shards, ascending: (n,) int64.

        Each shard is walked ``page`` ids at a time. Not a snapshot: an id written during
        the walk may be missing, or present although deleted meanwhile.
        """

        async def walk(shard: int) -> list[npt.NDArray[np.int64]]:
            pages, after = [], -1
            while True:
                params = {"after": after, "limit": page}
                answer = await self._call(shard, "GET", f"/collections/{name}/ids", params=params)
                listed = IdPage.model_validate_json(answer.content)
                pages.append(np.array(listed.ids, dtype=np.int64))
                if listed.next_after is None:
                    return pages
                after = listed.next_after

        per_shard = await self._all([walk(s) for s in range(self.shard_count)])
        return np.sort(np.concatenate([ids for pages in per_shard for ids in pages]))

    async def info(self, name: str) -> CollectionInfo:
        """The collection over all shards: summed count, combined checksum."""
        answers = await self._all(
            [self._call(s, "GET", f"/collections/{name}") for s in range(self.shard_count)]
        )
        infos = [CollectionInfo.model_validate(a.json()) for a in answers]
        devices = sorted({i.device for i in infos})
        memory = [i.memory_bytes for i in infos]
        return CollectionInfo(
            name=name,
            dim=infos[0].dim,
            count=sum(i.count for i in infos),
            checksum=combine_checksums(i.checksum for i in infos),
            index=infos[0].index,
            device=",".join(devices),
            memory_bytes=None if None in memory else sum(m for m in memory if m is not None),
        )

    async def health(self) -> list[Health]:
        answers = await self._all([self._call(s, "GET", "/health") for s in range(self.shard_count)])
        return [Health.model_validate(a.json()) for a in answers]
