"""Jobs on ``/metrics``: queue lengths, items by state, throughput, retries and dead letters.

Every replica reads them from the broker and the database every ``EVERY_S``, so each one
reports the same whole-system figures (take ``max`` across replicas, not ``sum``); the
workers serve no port of their own.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from celery import Celery
from prometheus_client import CollectorRegistry, Gauge

from orchestrator.db.gallery import Gallery
from orchestrator.db.job_tables import PRIORITIES
from orchestrator.db.types import utcnow
from orchestrator.jobs.queue import queue_lengths

log = logging.getLogger(__name__)

EVERY_S = 5.0
RATE_WINDOW = timedelta(seconds=60)
ITEM_STATES = ("queued", "running", "done", "failed", "dead", "cancelled")


class JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.queue_length = Gauge(
            "facerec_job_queue_length",
            "Items waiting in the broker's queue of each priority.",
            ["priority"],
            registry=registry,
        )
        self.items = Gauge(
            "facerec_job_items", "Items of the jobs kept, by state.", ["state"], registry=registry
        )
        self.items_per_second = Gauge(
            "facerec_job_items_per_second",
            f"Items ended per second over the last {RATE_WINDOW.seconds} s.",
            registry=registry,
        )
        self.retries = Gauge(
            "facerec_job_retries",
            "Attempts past the first, over the items of the jobs kept.",
            registry=registry,
        )
        self.dead_letters = Gauge(
            "facerec_job_dead_letters", "Items that failed on every attempt.", registry=registry
        )
        # Every series from the start (at 0), before the first refresh and without a broker.
        for priority in PRIORITIES:
            self.queue_length.labels(priority)
        for state in ITEM_STATES:
            self.items.labels(state)

    async def refresh(self, gallery: Gallery, broker: Celery | None) -> None:
        counts = await asyncio.to_thread(gallery.job_item_counts)
        ended, retries = await asyncio.to_thread(gallery.job_activity, utcnow() - RATE_WINDOW)
        for state in ITEM_STATES:
            self.items.labels(state).set(counts.get(state, 0))
        self.dead_letters.set(counts.get("dead", 0))
        self.items_per_second.set(ended / RATE_WINDOW.total_seconds())
        self.retries.set(retries)
        if broker is not None:
            lengths = await asyncio.to_thread(queue_lengths, broker)
            for priority in PRIORITIES:
                self.queue_length.labels(priority).set(lengths[priority])

    async def keep(self, gallery: Gallery, broker: Celery | None) -> None:
        """Forever: refresh every ``EVERY_S``; a failure keeps the last figures until the next."""
        while True:
            try:
                await self.refresh(gallery, broker)
            except Exception as error:
                log.warning("job metrics: %s", error)
            await asyncio.sleep(EVERY_S)
