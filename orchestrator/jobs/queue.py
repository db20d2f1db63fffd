"""The Celery app shared by the API (which sends) and the workers (which run): its broker,
its three queues and the settings that make priorities hold and a killed worker lose nothing.

Priorities are three queues, ``facerec.jobs.high``, ``.normal`` and ``.low``, read in that
order (kombu's ``queue_order_strategy: priority`` on Redis), with one message fetched per
free slot (prefetch multiplier 1). Not the broker's own per-message priorities: on Redis they
are emulated by a few sub-lists, polled in turn, and a worker holding prefetched ``low``
messages would run them before a ``high`` one sent after; separate queues read highest first
let a ``high`` job's items start at the next free slot, and show each queue's length
to an autoscaler as a plain list.

Messages are acknowledged after the item is done (``acks_late``), and a worker whose
process dies rejects what it held (``reject_on_worker_lost``); the database decides whether a
delivery still has work to do (:mod:`orchestrator.db.jobs`).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue

from orchestrator.db.job_tables import PRIORITIES

ITEM_TASK = "facerec.jobs.item"
VISIBILITY_TIMEOUT_S = 600
"""A message taken by a worker that died unacknowledged goes back to its queue after this;
the workers' own heartbeats requeue its item much sooner (``FACEREC_JOBS__LOST_AFTER_S``),
and this is the backstop for a message held for a retry's countdown. Longer than any item
and any countdown, or Redis would hand out a second copy of a message still being worked."""


def queue_name(priority: str) -> str:
    return f"facerec.jobs.{priority}"


QUEUES = [queue_name(priority) for priority in PRIORITIES]


def make_celery(broker_url: str) -> Celery:
    app = Celery("facerec", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],
        task_default_queue=queue_name("normal"),
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # the results are the items' in the database
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "queue_order_strategy": "priority",
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def send_item(app: Celery, job_id: int, index: int, priority: str, countdown: float | None = None) -> None:
    """Tell the workers that an item is queued (again, after ``countdown`` seconds)."""
    options: dict[str, Any] = {"queue": queue_name(priority), "routing_key": queue_name(priority)}
    if countdown:
        options["countdown"] = countdown
    app.send_task(ITEM_TASK, args=(job_id, index), **options)


def queue_lengths(app: Celery) -> dict[str, int]:
    """Messages waiting in each priority's queue (not those a worker holds)."""
    with app.connection_for_write() as connection:
        client = connection.default_channel.client
        return {priority: int(client.llen(queue_name(priority))) for priority in PRIORITIES}


def take_turn(app: Celery, duty: str, seconds: float) -> bool:
    """Whether this process has ``duty`` for the next ``seconds``: one of all the workers does."""
    with app.connection_for_write() as connection:
        client = connection.default_channel.client
        return bool(client.set(f"facerec.turn.{duty}", 1, nx=True, px=int(seconds * 1000)))
