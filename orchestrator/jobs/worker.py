"""``facerec worker``: one Celery worker process that does jobs' items.

Celery's thread pool runs ``FACEREC_JOBS__CONCURRENCY`` items at once; each hands its item
to one event loop of the process, which serves them all with the API's own parts
(:mod:`orchestrator.recognition.serving`), so their images reach Triton's dynamic batcher
together. The loop also keeps the worker's heartbeat, queues again the items of workers
that have gone silent (with Redis as the broker, a message held by a SIGKILLed worker comes
back only after the visibility timeout, its item's record much sooner), and sends again the
messages of queued items that the broker has lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery, Task

from orchestrator.core.settings import Settings
from orchestrator.db.jobs import Requeued
from orchestrator.db.types import utcnow
from orchestrator.jobs.items import Outcome, backoff_s, do_item
from orchestrator.jobs.queue import ITEM_TASK, QUEUES, make_celery, queue_lengths, send_item, take_turn
from orchestrator.recognition.serving import Serving, open_serving

log = logging.getLogger(__name__)

T = TypeVar("T")
STRANDED_BATCH = 1000
"""Stranded items sent again per heartbeat: a large job's are sent over a few."""


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ItemRunner:
    """The worker's event loop, on a thread of its own, and what it serves items with."""

    def __init__(self, settings: Settings, name: str, concurrency: int, queue: Celery) -> None:
        self.settings = settings
        self.name = name
        self.concurrency = concurrency
        self.queue = queue
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="items", daemon=True)
        self._stack = AsyncExitStack()
        self._serving: Serving | None = None
        self._held: set[tuple[int, int]] = set()
        """The items this worker is doing now, (job id, index); touched on the loop only."""

    def start(self) -> None:
        """Open the services and say this worker is alive, before any item is taken."""
        self._thread.start()
        self._call(self._open()).result()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._stack.aclose()).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def run_item(self, job_id: int, index: int, task_id: str | None = None) -> Outcome:
        """Do one item (from one of Celery's threads); a transient failure sends it again."""
        outcome, priority, attempts = self._call(self._item(job_id, index, task_id)).result()
        if outcome.state == "queued":
            wait = backoff_s(self.settings.jobs, attempts)
            log.info(
                "job %d item %d: attempt %d failed (%s), again in %.1f s",
                job_id,
                index,
                attempts,
                (outcome.error or {}).get("detail"),
                wait,
            )
            send_item(self.queue, job_id, index, priority, countdown=wait)
        return outcome

    def _call(self, work: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(work, self._loop)

    async def _open(self) -> None:
        self._serving = await open_serving(self._stack, self.settings)
        await self._beat()
        task = asyncio.create_task(self._keep_alive(), name="heartbeat")
        self._stack.push_async_callback(self._cancel, task)

    @staticmethod
    async def _cancel(task: asyncio.Task[None]) -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _item(self, job_id: int, index: int, task_id: str | None) -> tuple[Outcome, str, int]:
        assert self._serving is not None
        gallery = self._serving.gallery
        # Held from before the claim: the heartbeat queues again what this worker has as
        # running in the database but does not hold (its record failed to be written).
        self._held.add((job_id, index))
        try:
            claim = await asyncio.to_thread(gallery.claim_item, job_id, index, self.name, task_id)
            if claim is None:
                return Outcome("gone"), "", 0
            outcome = await do_item(
                self._serving, gallery, self.settings.jobs, claim, self.settings.api.default_top_k
            )
            return outcome, claim.priority, claim.attempts
        finally:
            self._held.discard((job_id, index))

    async def _beat(self) -> None:
        assert self._serving is not None
        await asyncio.to_thread(self._serving.gallery.heartbeat, self.name, self.concurrency)
        alive = self.settings.jobs.alive_file
        if alive is not None:
            await asyncio.to_thread(_touch, alive)

    async def _keep_alive(self) -> None:
        assert self._serving is not None
        jobs = self.settings.jobs
        while True:
            await asyncio.sleep(jobs.heartbeat_s)
            try:
                await self._beat()
                lost = await asyncio.to_thread(
                    self._serving.gallery.requeue_lost, timedelta(seconds=jobs.lost_after_s)
                )
                await self._send(lost)
                if lost:
                    log.warning("%d items of silent workers queued again", len(lost))
                # An item joins the set before its claim: what was claimed before this moment
                # is in the copy, and what is claimed after is left alone.
                held, as_of = frozenset(self._held), utcnow()
                dropped = await asyncio.to_thread(
                    self._serving.gallery.requeue_unheld, self.name, held, as_of
                )
                await self._send(dropped)
                if dropped:
                    log.warning("%d items this worker had dropped queued again", len(dropped))
                stranded = await self._stranded()
                await self._send(stranded)
                if stranded:
                    log.warning("%d queued items had no message in the broker: sent again", len(stranded))
            except Exception as error:
                log.warning("heartbeat failed, next in %.0f s: %s", jobs.heartbeat_s, error)

    async def _stranded(self) -> list[Requeued]:
        """Queued items whose messages the broker has lost, looked for by one worker at a time."""
        assert self._serving is not None
        lost_after_s = self.settings.jobs.lost_after_s
        lengths = await asyncio.to_thread(queue_lengths, self.queue)
        empty = [priority for priority, length in lengths.items() if length == 0]
        if not empty or not await asyncio.to_thread(take_turn, self.queue, "stranded", lost_after_s):
            return []
        now = utcnow()
        created_before = now - timedelta(seconds=lost_after_s)
        tried_before = created_before - timedelta(seconds=self.settings.jobs.retry_backoff_max_s)
        return await asyncio.to_thread(
            self._serving.gallery.stranded_items, created_before, tried_before, empty, STRANDED_BATCH
        )

    async def _send(self, items: list[Requeued]) -> None:
        for item in items:
            await asyncio.to_thread(send_item, self.queue, item.job_id, item.index, item.priority)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def run_worker(settings: Settings, name: str, concurrency: int) -> None:
    """Run until SIGTERM (Celery's warm shutdown: the items in hand are finished) or SIGINT."""
    if not settings.redis_url:
        raise SystemExit("facerec worker needs a broker: set REDIS_URL (or FACEREC_REDIS_URL)")
    queue = make_celery(settings.redis_url)
    runner = ItemRunner(settings, name, concurrency, queue)

    @queue.task(name=ITEM_TASK, bind=True)
    def item(task: Task, job_id: int, index: int) -> str:
        return runner.run_item(job_id, index, task.request.id).state

    runner.start()
    log.info("worker %s: %d items at once from %s", name, concurrency, ", ".join(QUEUES))
    try:
        queue.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency}",
                f"--queues={','.join(QUEUES)}",
                f"--hostname={name}@%h",
                "--loglevel=INFO",
                # No gossip, mingle or event heartbeats: the database keeps who is alive.
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        )
    finally:
        runner.stop()
