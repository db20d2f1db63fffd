"""The orchestrator's FastAPI app: ``create_app(settings)`` and the lifespan that opens its clients."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import cv2
from fastapi import FastAPI

from orchestrator.api import person_body, problems, responses
from orchestrator.api.admission import Admission
from orchestrator.api.door import Door
from orchestrator.api.in_flight import InFlightShare, InFlightSlots
from orchestrator.api.metrics import ApiMetrics, MetricsMiddleware
from orchestrator.api.request_context import RequestContext
from orchestrator.api.routes import (
    calibration,
    duplicates,
    health,
    index,
    keys,
    metrics,
    models,
    people,
    recognition_log,
    recognize,
    stats,
)
from orchestrator.api.shutdown import CloseWhileDraining, Draining
from orchestrator.clients.search import SearchClient
from orchestrator.clients.triton import TritonModels
from orchestrator.clients.triton_control import ModelControl
from orchestrator.core.resources import Resources
from orchestrator.core.secret_files import hand_over_first_admin_key
from orchestrator.core.settings import Settings
from orchestrator.db.engine import default_database_url, make_engine, migrate
from orchestrator.db.gallery import Gallery
from orchestrator.gallery.enrolment import Enrolment
from orchestrator.gallery.live_view import LiveView
from orchestrator.gallery.model_keeper import ensure_live_versions, keep_live_versions, live_versions
from orchestrator.gallery.rollout import RolloutRunner, process_name
from orchestrator.gallery.score_keeper import ScoreKeeper
from orchestrator.pipeline.face_pipeline import FacePipeline
from orchestrator.pipeline.memory_budget import PixelBudget
from orchestrator.recognition.cache import RecognitionCache
from orchestrator.recognition.log_writer import RecognitionLogWriter
from orchestrator.recognition.search_batching import SearchBatcher
from orchestrator.recognition.service import Recognition
from orchestrator.stats.minutes import MinuteWriter
from orchestrator.stats.retention import keep_retention

log = logging.getLogger(__name__)

DESCRIPTION = """Face recognition over REST: enrol people from photos, recognise them in new ones.

Authenticate with an `X-API-Key` header. Roles: `admin` (everything) and `recognize`
(recognize, verify, detect, read people). Errors are `application/problem+json`.
"""


def background(stack: AsyncExitStack, work: Coroutine[Any, Any, None], name: str) -> None:
    """Run ``work`` for as long as the app; cancelled (and awaited) when the app stops."""
    task = asyncio.create_task(work, name=name)

    async def cancel() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    stack.push_async_callback(cancel)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    async with AsyncExitStack() as stack:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url or default_database_url(settings.data_dir))
        stack.callback(engine.dispose)
        await asyncio.to_thread(migrate, engine)
        gallery = Gallery(engine)
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        created = await asyncio.to_thread(gallery.ensure_first_admin, admin)
        if created and not admin:
            # Only its hash is stored; the plaintext goes to an owner-only file, not the log.
            hand_over_first_admin_key(settings.data_dir, created)

        token = settings.search_token.get_secret_value() if settings.search_token else None
        search = SearchClient(settings.search_service_urls, token=token)
        stack.push_async_callback(search.aclose)
        cache = RecognitionCache(settings.redis_url, ttl_s=settings.api.cache_ttl_s)
        await cache.start()
        stack.push_async_callback(cache.close)
        executor = ThreadPoolExecutor(settings.api.cpu_workers, thread_name_prefix="pixels")
        # Images already run in parallel on this pool; OpenCV's own pool on top only
        # spins (sched_yield) against them and Triton for the same cores.
        cv2.setNumThreads(1)
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        triton = TritonModels(settings.triton_grpc_url, settings.triton.timeout_s, executor)
        stack.push_async_callback(triton.close)

        budget = PixelBudget(settings.api.pixel_budget_bytes)
        app.state.metrics.pixel_bytes.set_function(lambda: budget.in_use)
        pipeline = FacePipeline(triton, executor=executor, budget=budget)
        live = LiveView(gallery, settings.api.refresh_s, settings.match, settings.match_threshold)
        stack.push_async_callback(live.close)
        log_writer = RecognitionLogWriter(gallery)
        await log_writer.start()
        stack.push_async_callback(log_writer.close)
        minutes = MinuteWriter(
            app.state.metrics.minutes, gallery.add_request_minutes, process_name(), settings.log.stats_flush_s
        )
        await minutes.start()
        stack.push_async_callback(minutes.close)
        background(stack, keep_retention(gallery, settings.log), "log retention")
        control = ModelControl(
            settings.triton_control_urls, settings.triton_metrics_url, settings.triton.timeout_s
        )
        stack.push_async_callback(control.close)
        scores = ScoreKeeper(gallery, search, settings.match.neighbours)
        rollouts = RolloutRunner(
            gallery,
            search,
            pipeline,
            control,
            settings.embedding_dim,
            settings.rollout,
            live,
            settings.triton_repository,
            index=settings.index,
            scores=scores,
        )
        stack.push_async_callback(rollouts.close)
        await ensure_live_versions(control, live_versions(await asyncio.to_thread(gallery.state)))
        background(stack, rollouts.watch(), "rollout takeover")
        reconciliation = await rollouts.reconcile()
        log.info("gallery reconciled: %s", reconciliation)
        background(stack, keep_live_versions(gallery, control, settings.triton.check_s), "model keeper")
        app.state.resources = Resources(
            settings=settings,
            gallery=gallery,
            triton=triton,
            search=search,
            cache=cache,
            pipeline=pipeline,
            recognition=Recognition(
                live, SearchBatcher(search), pipeline, cache, log_writer, settings.match_threshold
            ),
            enrolment=Enrolment(
                gallery,
                search,
                pipeline,
                settings.quality,
                scores=scores,
                threshold_for=live.threshold,
                match_threshold=settings.match_threshold,
            ),
            live=live,
            reconciliation=reconciliation,
            rollouts=rollouts,
            scores=scores,
        )
        # What start-up made lives as long as the process: out of the collector's sight, a
        # full collection under load stops the event loop for ms, not 140 ms (measured).
        gc.freeze()
        yield


def create_app(settings: Settings, in_flight: InFlightShare | None = None) -> FastAPI:
    """The app; ``in_flight``: it is one of several workers on a port, sharing its admission limit."""
    app = FastAPI(
        title="facerec",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = ApiMetrics()
    slots = InFlightSlots(in_flight) if in_flight else None
    app.state.admission = Admission(settings.api.max_concurrent_images, app.state.metrics, slots)
    problems.install(app)
    responses.install(app, request_models=person_body.REQUEST_MODELS)
    # Each router declares its path prefix and the role it needs.
    routers = (
        duplicates.router,  # before people.router's /v1/people/{person_id}
        people.admin_router,
        people.router,
        recognize.router,
        keys.router,
        models.router,
        index.router,
        recognition_log.router,
        stats.router,
        calibration.router,
        health.router,
        health.keyed_router,
        metrics.router,
    )
    for router in routers:
        app.include_router(router)
    # Innermost first: key and admission before the body, inside the metrics and the request id.
    image_endpoints = (*recognize.ANALYSE_IMAGES, *people.ANALYSE_IMAGES)
    app.add_middleware(
        Door,
        admission=app.state.admission,
        image_endpoints=image_endpoints,
        form_image_endpoints=people.ANALYSE_IMAGES_IN_FORMS,
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(RequestContext, max_body_bytes=settings.api.max_body_bytes)
    app.state.draining = Draining()
    app.add_middleware(CloseWhileDraining, draining=app.state.draining)
    return app
