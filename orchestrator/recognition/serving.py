"""What recognises and enrols, opened for one process: the API's lifespan and a job worker
(``facerec worker``) both serve from these, so an image in a job is answered exactly as
the same image through ``/v1/recognize``."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass

import cv2

from orchestrator.clients.milvus import MilvusSearch
from orchestrator.clients.search import SearchClient
from orchestrator.clients.search_backend import SearchBackend
from orchestrator.clients.triton import TritonModels
from orchestrator.core.settings import Settings
from orchestrator.db.engine import default_database_url, make_engine, migrate
from orchestrator.db.gallery import Gallery
from orchestrator.gallery.enrolment import Enrolment
from orchestrator.gallery.live_view import LiveView
from orchestrator.gallery.score_keeper import ScoreKeeper
from orchestrator.pipeline.face_pipeline import FacePipeline
from orchestrator.pipeline.memory_budget import PixelBudget
from orchestrator.recognition.cache import RecognitionCache
from orchestrator.recognition.log_writer import RecognitionLogWriter
from orchestrator.recognition.search_batching import SearchBatcher
from orchestrator.recognition.service import Recognition


@dataclass
class Serving:
    gallery: Gallery
    search: SearchBackend
    cache: RecognitionCache
    triton: TritonModels
    budget: PixelBudget
    pipeline: FacePipeline
    live: LiveView
    log_writer: RecognitionLogWriter
    scores: ScoreKeeper
    recognition: Recognition
    enrolment: Enrolment


def open_search(settings: Settings) -> SearchBackend:
    """The search backend ``FACEREC_SEARCH__BACKEND`` names; it connects at its first call."""
    if settings.search.backend == "milvus":
        return MilvusSearch(
            settings.milvus_uri,
            token=settings.milvus_token,
            timeout=settings.search.timeout_s,
            gpu_index=settings.search.milvus_gpu_index,
        )
    token = settings.search_token.get_secret_value() if settings.search_token else None
    return SearchClient(settings.search_service_urls, token=token)


async def open_serving(stack: AsyncExitStack, settings: Settings) -> Serving:
    """Open the database (migrated), the clients and the pipeline; ``stack`` closes them."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url or default_database_url(settings.data_dir))
    stack.callback(engine.dispose)
    await asyncio.to_thread(migrate, engine)
    gallery = Gallery(engine)

    search = open_search(settings)
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
    pipeline = FacePipeline(triton, executor=executor, budget=budget, chain=settings.triton.chain)
    live = LiveView(gallery, settings.api.refresh_s, settings.match, settings.match_threshold)
    stack.push_async_callback(live.close)
    log_writer = RecognitionLogWriter(gallery)
    await log_writer.start()
    stack.push_async_callback(log_writer.close)
    scores = ScoreKeeper(gallery, search, settings.match.neighbours)
    return Serving(
        gallery=gallery,
        search=search,
        cache=cache,
        triton=triton,
        budget=budget,
        pipeline=pipeline,
        live=live,
        log_writer=log_writer,
        scores=scores,
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
    )
