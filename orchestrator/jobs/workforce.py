"""Who works on the jobs and what waits for them: the workers' heartbeats (the database) and
the queues' lengths (the broker), as ``GET /v1/jobs/workers`` and the dashboard show them."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

from celery import Celery
from pydantic import BaseModel, Field

from orchestrator.core.errors import UpstreamUnavailable
from orchestrator.db.gallery import Gallery
from orchestrator.db.job_tables import PRIORITIES, JobPriority
from orchestrator.db.store import MAX_PAGE
from orchestrator.db.types import utcnow
from orchestrator.jobs.queue import queue_lengths

LISTED_FOR = timedelta(hours=1)
"""A worker silent longer than this is left out: its items were queued again long ago, and a
restarted worker has a new name (``host-pid``), so the old one would only pile up."""
BROKER_TIMEOUT_S = 3.0


class JobWorkerState(BaseModel):
    name: str = Field(description="as the worker named itself: host-pid, unless it was given --name")
    started_at: datetime = Field(description="its first heartbeat")
    seen_at: datetime = Field(description="its last heartbeat")
    alive: bool = Field(description="its last heartbeat is within FACEREC_JOBS__LOST_AFTER_S")
    concurrency: int = Field(description="items it runs at once")
    running: int = Field(description="items the database has as running on it")


def worker_states(gallery: Gallery, lost_after_s: float) -> list[JobWorkerState]:
    """The workers heard from within :data:`LISTED_FOR`, by name, with their running items."""
    now = utcnow()
    workers = gallery.workers(now - LISTED_FOR)
    # At most the slots of the workers (and those of the lost until the next heartbeat requeues them).
    running, _ = gallery.job_items(None, "running", MAX_PAGE, 0)
    per_worker = Counter(item.worker for item in running)
    return [
        JobWorkerState(
            name=worker.name,
            started_at=worker.started_at,
            seen_at=worker.seen_at,
            alive=now - worker.seen_at <= timedelta(seconds=lost_after_s),
            concurrency=worker.concurrency,
            running=per_worker[worker.name],
        )
        for worker in workers
    ]


async def waiting(broker: Celery | None) -> dict[JobPriority, int]:
    """Messages waiting in each priority's queue; UpstreamUnavailable without a broker or when it
    does not answer within :data:`BROKER_TIMEOUT_S`."""
    if broker is None:
        raise UpstreamUnavailable("jobs need a broker: this service runs without REDIS_URL")
    try:
        lengths = await asyncio.wait_for(asyncio.to_thread(queue_lengths, broker), BROKER_TIMEOUT_S)
    except TimeoutError as error:
        raise UpstreamUnavailable(f"the job broker did not answer within {BROKER_TIMEOUT_S:.0f} s") from error
    except Exception as error:  # kombu's errors vary by transport: any means the broker is away
        raise UpstreamUnavailable(f"the job broker cannot be reached: {error}") from error
    return {priority: lengths[priority] for priority in PRIORITIES}
