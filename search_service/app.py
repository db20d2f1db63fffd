"""The HTTP API of the search service (see API.md, "Search service HTTP API")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

from search_service.auth import TokenCheck
from search_service.collection import Collection, Limits
from search_service.device import Device, ReplicaDevice, make_device
from search_service.errors import InvalidInput
from search_service.gpu_support import GpuUnavailable
from search_service.metrics import Metrics, MetricsMiddleware
from search_service.problems import install_problem_handlers
from search_service.registry import Registry, check_name
from search_service.schema import (
    Added,
    AddVectors,
    CollectionInfo,
    CollectionSpec,
    Deleted,
    DeleteVectors,
    Health,
    IdPage,
    IdsQuery,
    SearchRequest,
    SearchResults,
)
from search_service.settings import SearchSettings
from search_service.vectors import Matrix, as_ids, check_shard, decode_vectors, normalise

logger = logging.getLogger(__name__)
T = TypeVar("T")
_INLINE_VALUES = 1 << 16  # decode small payloads on the loop, bigger ones in a thread


@dataclass
class Resources:
    settings: SearchSettings
    device: Device
    pool: ThreadPoolExecutor
    registry: Registry


def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(_resources)]


def _collection(name: str, resources: ResourcesDep) -> Collection:
    return resources.registry.get(name)


CollectionDep = Annotated[Collection, Depends(_collection)]


async def _off_loop(size: int, fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn) if size > _INLINE_VALUES else fn()


def _unit_vectors(payload: list[list[float]] | str, dim: int) -> Matrix:
    return normalise(decode_vectors(payload, dim))


def _payload_size(payload: list[list[float]] | str) -> int:
    return len(payload) // 4 if isinstance(payload, str) else len(payload) * 64


def create_app(settings: SearchSettings) -> FastAPI:
    """A search service app for ``settings``; collections are opened by the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            try:
                device = make_device(
                    settings.device_choice, temp_memory_bytes=settings.gpu_temp_memory_mb << 20
                )
            except GpuUnavailable as error:
                # Refused before faiss touched the GPU: the process ends with this reason.
                logger.error("search service cannot start on device %s: %s", settings.device, error)
                raise
            if isinstance(device, ReplicaDevice):
                stack.callback(device.close)
            metrics.device.labels(device.name).set(1)
            pool = ThreadPoolExecutor(settings.search_threads, thread_name_prefix="search")
            stack.callback(pool.shutdown, wait=True)
            limits = Limits(
                snapshot_every_records=settings.snapshot_every_records,
                snapshot_every_bytes=settings.snapshot_every_bytes,
                max_tombstones=settings.max_tombstones,
            )
            registry = Registry(settings.data_dir, device, pool, limits)
            await registry.open_all()
            stack.push_async_callback(registry.close)
            app.state.resources = Resources(settings, device, pool, registry)
            logger.info(
                "search service ready: data %s, shard %s, device %s, %d collections",
                settings.data_dir,
                settings.shard,
                device.name,
                len(registry),
            )
            yield
            logger.info("search service stopping: snapshotting collections")

    app = FastAPI(title="facerec search service", lifespan=lifespan)
    install_problem_handlers(app)

    def opened() -> list[tuple[str, Collection]]:
        resources: Resources | None = getattr(app.state, "resources", None)
        return resources.registry.items() if resources else []

    metrics = Metrics(
        lambda: [(name, c.state.count) for name, c in opened()],
        lambda: [(name, int(c.device_copy_lost)) for name, c in opened() if c.has_device_copy],
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    shard = settings.shard_tuple
    # Every collection route needs the token; /health and /metrics (probes, Prometheus) do not.
    collections = APIRouter(prefix="/collections", dependencies=[Depends(TokenCheck(settings.token))])

    @collections.put("/{name}", response_model=CollectionInfo, status_code=201)
    async def put_collection(
        name: str, spec: CollectionSpec, resources: ResourcesDep, response: Response
    ) -> CollectionInfo:
        created = await resources.registry.create(check_name(name), spec)
        response.status_code = 201 if created else 200
        return resources.registry.get(name).info()

    @collections.get("", response_model=list[CollectionInfo])
    async def list_collections(resources: ResourcesDep) -> list[CollectionInfo]:
        return [c.info() for _, c in resources.registry.items()]

    @collections.get("/{name}", response_model=CollectionInfo)
    async def get_collection(collection: CollectionDep) -> CollectionInfo:
        return collection.info()

    @collections.delete("/{name}", status_code=204)
    async def delete_collection(name: str, resources: ResourcesDep) -> Response:
        await resources.registry.drop(name)
        return Response(status_code=204)

    @collections.post("/{name}/vectors", response_model=Added)
    async def add_vectors(body: AddVectors, collection: CollectionDep) -> Added:
        dim = collection.spec.dim
        vectors = await _off_loop(_payload_size(body.vectors), lambda: _unit_vectors(body.vectors, dim))
        if len(vectors) != len(body.ids):
            raise InvalidInput(f"{len(body.ids)} ids but {len(vectors)} vectors", slug="count-mismatch")
        ids = as_ids(body.ids)
        check_shard(ids, shard)
        return Added(added=await collection.add(ids, vectors))

    @collections.delete("/{name}/vectors", response_model=Deleted)
    async def delete_vectors(body: DeleteVectors, collection: CollectionDep) -> Deleted:
        ids = as_ids(body.ids)
        check_shard(ids, shard)
        return Deleted(deleted=await collection.delete(ids))

    @collections.post("/{name}/search", response_model=SearchResults)
    async def search(body: SearchRequest, collection: CollectionDep) -> JSONResponse:
        dim = collection.spec.dim
        queries = await _off_loop(_payload_size(body.vectors), lambda: _unit_vectors(body.vectors, dim))
        if len(queries) > settings.max_queries:
            raise InvalidInput(
                f"{len(queries)} query vectors, at most {settings.max_queries} per call",
                slug="too-many-queries",
            )
        hits = await collection.search(queries, body.k) if len(queries) else []
        metrics.queries.labels(collection.name).inc(len(queries))
        # Built by hand: response-model validation of many hits costs more than FAISS.
        results = [[{"id": i, "score": s} for i, s in row] for row in hits]
        return JSONResponse({"results": results})

    @collections.get("/{name}/ids", response_model=IdPage)
    async def list_ids(query: Annotated[IdsQuery, Query()], collection: CollectionDep) -> IdPage:
        ids, more = await collection.ids(query.after, query.limit)
        listed = ids.tolist()
        return IdPage(ids=listed, next_after=listed[-1] if more else None)

    app.include_router(collections)

    @app.get("/health", response_model=Health)
    async def health(resources: ResourcesDep) -> Health:
        return Health(
            status="ok",
            shard=settings.shard,
            collections=len(resources.registry),
            device=resources.device.name,
        )

    @app.get("/metrics")
    async def get_metrics() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app
