"""The orchestrator's FastAPI app: ``create_app(settings)`` and the lifespan that opens its clients."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from orchestrator.api import image_body, person_body, problems, responses
from orchestrator.api.admission import Admission
from orchestrator.api.door import Door
from orchestrator.api.in_flight import InFlightShare, InFlightSlots
from orchestrator.api.metrics import ApiMetrics, MetricsMiddleware
from orchestrator.api.request_context import RequestContext
from orchestrator.api.routes import (
    auth,
    calibration,
    duplicates,
    health,
    index,
    jobs,
    keys,
    metrics,
    models,
    people,
    recognition_log,
    recognize,
    stats,
    users,
)
from orchestrator.api.shutdown import CloseWhileDraining, Draining
from orchestrator.clients.triton_control import ModelControl
from orchestrator.core.resources import Resources
from orchestrator.core.secret_files import hand_over_first_admin_key
from orchestrator.core.settings import Settings
from orchestrator.gallery.model_keeper import ensure_live_versions, keep_live_versions, live_versions
from orchestrator.gallery.rollout import RolloutRunner, process_name
from orchestrator.jobs.queue import make_celery
from orchestrator.recognition.serving import open_serving
from orchestrator.stats.minutes import MinuteWriter
from orchestrator.stats.retention import keep_retention
from orchestrator.web import pages

log = logging.getLogger(__name__)

DESCRIPTION = """Face recognition over REST: enrol people from photos, recognise them in new ones.

Authenticate with an `X-API-Key` header (machines), or sign in with a user account at
`POST /v1/auth/login` (a session cookie; POST, PUT, PATCH and DELETE also send its
`X-CSRF-Token`). Roles: `admin` (everything) and `recognize` (recognize, verify, detect,
read people). Errors are `application/problem+json`.
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
        serving = await open_serving(stack, settings)
        gallery, search, live, pipeline, scores = (
            serving.gallery,
            serving.search,
            serving.live,
            serving.pipeline,
            serving.scores,
        )
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        created = await asyncio.to_thread(gallery.ensure_first_admin, admin)
        if created and not admin:
            # Only its hash is stored; the plaintext goes to an owner-only file, not the log.
            hand_over_first_admin_key(settings.data_dir, created)
        app.state.metrics.pixel_bytes.set_function(lambda: serving.budget.in_use)
        broker = make_celery(settings.redis_url) if settings.redis_url else None
        background(stack, app.state.metrics.jobs.keep(gallery, broker), "job metrics")
        minutes = MinuteWriter(
            app.state.metrics.minutes, gallery.add_request_minutes, process_name(), settings.log.stats_flush_s
        )
        await minutes.start()
        stack.push_async_callback(minutes.close)
        background(
            stack, keep_retention(gallery, settings.log, settings.jobs.retention_days), "log retention"
        )
        control = ModelControl(
            settings.triton_control_urls, settings.triton_metrics_url, settings.triton.timeout_s
        )
        stack.push_async_callback(control.close)
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
            triton=serving.triton,
            search=search,
            cache=serving.cache,
            pipeline=pipeline,
            recognition=serving.recognition,
            enrolment=serving.enrolment,
            live=live,
            reconciliation=reconciliation,
            rollouts=rollouts,
            scores=scores,
            jobs=broker,
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
    responses.install(app, request_models=(*person_body.REQUEST_MODELS, *image_body.REQUEST_MODELS))
    # Each router declares its path prefix and the role it needs.
    routers = (
        duplicates.router,  # before people.router's /v1/people/{person_id}
        people.admin_router,
        people.router,
        recognize.router,
        keys.router,
        users.router,
        auth.router,
        auth.signed_in_router,
        models.router,
        index.router,
        recognition_log.router,
        stats.router,
        calibration.router,
        jobs.router,
        health.router,
        health.keyed_router,
        metrics.router,
    )
    for router in routers:
        app.include_router(router)
    app.include_router(pages.router)  # the web app: pages at /, their assets under /static
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    # Innermost first: key and admission before the body, inside the metrics and the request id.
    image_endpoints = (*recognize.ANALYSE_IMAGES, *people.ANALYSE_IMAGES)
    app.add_middleware(
        Door,
        admission=app.state.admission,
        image_endpoints=image_endpoints,
        form_image_endpoints=people.ANALYSE_IMAGES_IN_FORMS,
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.api.max_body_bytes,
        body_limits={"/v1/jobs": settings.jobs.max_body_bytes},
    )
    app.state.draining = Draining()
    app.add_middleware(CloseWhileDraining, draining=app.state.draining)
    return app
