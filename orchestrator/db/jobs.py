"""Jobs, their items and the workers that run them (:mod:`orchestrator.db.job_tables`).

Every change of an item's state is one conditional UPDATE: ``claim`` takes a ``queued``
item, ``finish`` ends a ``running`` one and counts it on its job in the same transaction;
whoever loses the race changes nothing. That is what makes the broker's at-least-once
delivery give each item one result.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from orchestrator.core.errors import Conflict, NotFound
from orchestrator.db.job_tables import (
    ENDED,
    ItemState,
    Job,
    JobImage,
    JobItem,
    JobItemPublic,
    JobPublic,
    JobState,
    JobWorker,
    public_job,
)
from orchestrator.db.store import Store, check_page
from orchestrator.db.types import utcnow


@dataclass(frozen=True)
class NewItem:
    filename: str
    images: Sequence[tuple[str, bytes]]
    """(file name, bytes): one image to recognise, or an enrolment's photos."""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """An item a worker has taken, with what it needs to do it."""

    job_id: int
    index: int
    kind: str
    priority: str
    principal: str
    options: dict[str, Any]
    filename: str
    params: dict[str, Any]
    images: list[tuple[str, bytes]]
    attempts: int
    """This attempt's number, from 1."""


@dataclass(frozen=True)
class Requeued:
    job_id: int
    index: int
    priority: str


def _item(item: JobItem) -> JobItemPublic:
    return JobItemPublic.model_validate(item.model_dump())


def _item_in(job_id: int, index: int, state: str) -> tuple[Any, ...]:
    """One item while it is in ``state``: the guard of each of its transitions."""
    return (col(JobItem.job_id) == job_id, col(JobItem.index) == index, col(JobItem.state) == state)


def _back_to_queue(session: Session, rows: Sequence[Any], *conditions: Any) -> list[Requeued]:
    """Running items (job id, index, priority) queued again, each if it is still running so."""
    requeued = []
    for job_id, index, priority in rows:
        back = session.execute(
            update(JobItem)
            .where(*_item_in(job_id, index, "running"))
            .where(*conditions)
            .values(state="queued", worker=None)
        )
        if back.rowcount == 1:  # type: ignore[attr-defined]
            requeued.append(Requeued(job_id, index, priority))
    return requeued


class Jobs(Store):
    def create_job(
        self, kind: str, priority: str, principal: str, options: dict[str, Any], items: Sequence[NewItem]
    ) -> JobPublic:
        """The job and every item with its images, in one transaction: acknowledged means stored."""
        with self._writing() as session:
            job = Job(kind=kind, priority=priority, principal=principal, options=options, total=len(items))
            session.add(job)
            session.flush()
            assert job.id is not None
            for index, item in enumerate(items):
                session.add(JobItem(job_id=job.id, index=index, filename=item.filename, params=item.params))
            session.flush()  # the items before their images (the images' foreign key)
            for index, item in enumerate(items):
                for position, (name, data) in enumerate(item.images):
                    session.add(
                        JobImage(job_id=job.id, index=index, position=position, filename=name, data=data)
                    )
        return public_job(job)

    def job(self, job_id: int) -> JobPublic:
        with self._reading() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            return public_job(job)

    def list_jobs(
        self, state: JobState | None = None, kind: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[JobPublic], int]:
        """Newest first."""
        check_page(limit, offset)
        conditions: list[Any] = []
        if state is not None:
            conditions.append(col(Job.state) == state)
        if kind is not None:
            conditions.append(col(Job.kind) == kind)
        with self._reading() as session:
            total = session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
            rows = session.scalars(
                select(Job).where(*conditions).order_by(col(Job.id).desc()).limit(limit).offset(offset)
            ).all()
            return [public_job(job) for job in rows], total

    def job_items(
        self, job_id: int | None, state: ItemState | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[JobItemPublic], int]:
        """A job's items in their order (``job_id`` None: every job's, oldest job first)."""
        check_page(limit, offset)
        conditions: list[Any] = []
        if job_id is not None:
            self.job(job_id)  # 404 for a job that is not there
            conditions.append(col(JobItem.job_id) == job_id)
        if state is not None:
            conditions.append(col(JobItem.state) == state)
        with self._reading() as session:
            total = session.scalar(select(func.count()).select_from(JobItem).where(*conditions)) or 0
            rows = session.scalars(
                select(JobItem)
                .where(*conditions)
                .order_by(col(JobItem.job_id), col(JobItem.index))
                .limit(limit)
                .offset(offset)
            ).all()
            return [_item(item) for item in rows], total

    def job_image(self, job_id: int, index: int, position: int = 0) -> tuple[str, bytes]:
        """An item's stored image, (file name, bytes); NotFound when there is none (an unknown
        item, or its job pruned with its images)."""
        self.job(job_id)  # 404 naming the job when it is the job that is not there
        with self._reading() as session:
            image = session.get(JobImage, (job_id, index, position))
            if image is None:
                raise NotFound(f"job {job_id} has no image {position} of item {index}")
            return image.filename, bytes(image.data)

    def claim_item(self, job_id: int, index: int, worker: str, task_id: str | None = None) -> Claim | None:
        """Take a queued item for ``worker``; None when it is not queued (done already, taken
        by another delivery of its message, or its job cancelled)."""
        now = utcnow()
        with self._writing() as session:
            job = session.get(Job, job_id)
            if job is None or job.state == "cancelled":
                return None
            taken = session.execute(
                update(JobItem)
                .where(*_item_in(job_id, index, "queued"))
                .values(
                    state="running",
                    worker=worker,
                    task_id=task_id,
                    started_at=now,
                    attempts=col(JobItem.attempts) + 1,
                )
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return None
            if job.state == "queued":
                job.state, job.started_at = "running", now
            item = session.get(JobItem, (job_id, index))
            assert item is not None
            images = session.execute(
                select(col(JobImage.filename), col(JobImage.data))
                .where(col(JobImage.job_id) == job_id, col(JobImage.index) == index)
                .order_by(col(JobImage.position))
            ).all()
            return Claim(
                job_id=job_id,
                index=index,
                kind=job.kind,
                priority=job.priority,
                principal=job.principal,
                options=dict(job.options),
                filename=item.filename,
                params=dict(item.params),
                images=[(name, bytes(data)) for name, data in images],
                attempts=item.attempts,
            )

    def finish_item(
        self,
        job_id: int,
        index: int,
        state: ItemState,
        *,
        duration_ms: float,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        recognised: str | None = None,
    ) -> bool:
        """End a running item as ``state`` (done, failed or dead) and count it on its job, which
        ends with its last item. False: it was not running (another delivery ended it)."""
        if state not in ("done", "failed", "dead"):
            raise ValueError(f"an item does not end as {state!r}")
        now = utcnow()
        with self._writing() as session:
            ended = session.execute(
                update(JobItem)
                .where(*_item_in(job_id, index, "running"))
                .values(
                    state=state,
                    finished_at=now,
                    duration_ms=duration_ms,
                    result=result,
                    error=error,
                    recognised=recognised,
                )
            )
            if ended.rowcount != 1:  # type: ignore[attr-defined]
                return False
            counter = col(Job.done) if state == "done" else col(Job.failed)
            session.execute(update(Job).where(col(Job.id) == job_id).values({counter: counter + 1}))
            job = session.get(Job, job_id, populate_existing=True)
            assert job is not None
            if job.state in ("queued", "running") and job.done + job.failed >= job.total:
                dead = session.scalar(
                    select(func.count())
                    .select_from(JobItem)
                    .where(col(JobItem.job_id) == job_id, col(JobItem.state) == "dead")
                )
                job.state, job.finished_at = ("failed" if dead else "done"), now
            return True

    def requeue_item(self, job_id: int, index: int, error: dict[str, Any]) -> bool:
        """Put a running item back in the queue for another attempt, keeping its last error."""
        with self._writing() as session:
            back = session.execute(
                update(JobItem)
                .where(*_item_in(job_id, index, "running"))
                .values(state="queued", worker=None, error=error)
            )
            return bool(back.rowcount == 1)  # type: ignore[attr-defined]

    def requeue_lost(self, silent_for: timedelta) -> list[Requeued]:
        """The running items of workers silent for ``silent_for`` (killed, cut off) back in the
        queue; they are to be sent again."""
        lost_before = utcnow() - silent_for
        alive = select(col(JobWorker.name)).where(col(JobWorker.seen_at) >= lost_before)
        with self._writing() as session:
            rows = session.execute(
                select(col(JobItem.job_id), col(JobItem.index), col(Job.priority))
                .join(Job, col(Job.id) == col(JobItem.job_id))
                .where(
                    col(JobItem.state) == "running",
                    or_(col(JobItem.worker).is_(None), col(JobItem.worker).not_in(alive)),
                )
            ).all()
            return _back_to_queue(session, rows)

    def requeue_unheld(
        self, worker: str, held: Collection[tuple[int, int]], as_of: datetime
    ) -> list[Requeued]:
        """``worker``'s running items that it did not hold at ``as_of``, (job id, index), back in
        the queue: it failed to record their end (the database away for a moment). Items
        claimed since ``as_of`` are not in ``held`` and are left alone."""
        with self._writing() as session:
            rows = session.execute(
                select(col(JobItem.job_id), col(JobItem.index), col(Job.priority))
                .join(Job, col(Job.id) == col(JobItem.job_id))
                .where(
                    col(JobItem.state) == "running",
                    col(JobItem.worker) == worker,
                    col(JobItem.started_at) < as_of,
                )
            ).all()
            unheld = [row for row in rows if (row[0], row[1]) not in held]
            return _back_to_queue(session, unheld, col(JobItem.worker) == worker)

    def stranded_items(
        self, created_before: datetime, tried_before: datetime, priorities: Sequence[str], limit: int
    ) -> list[Requeued]:
        """Queued items of live jobs at these priorities whose message is overdue: never tried,
        of a job made before ``created_before``; or tried, last begun before ``tried_before``
        (past any retry's countdown). Where the broker's queue is empty, their messages are
        gone: a broker restarted without persistence, a process killed or cut off from the
        broker between recording an item and sending its message."""
        with self._reading() as session:
            rows = session.execute(
                select(col(JobItem.job_id), col(JobItem.index), col(Job.priority))
                .join(Job, col(Job.id) == col(JobItem.job_id))
                .where(
                    col(Job.state).in_(("queued", "running")),
                    col(Job.priority).in_(priorities),
                    col(JobItem.state) == "queued",
                    or_(
                        and_(col(JobItem.attempts) == 0, col(Job.created_at) < created_before),
                        and_(col(JobItem.attempts) > 0, col(JobItem.started_at) < tried_before),
                    ),
                )
                .order_by(col(JobItem.job_id), col(JobItem.index))
                .limit(limit)
            ).all()
            return [Requeued(job_id, index, priority) for job_id, index, priority in rows]

    def queued_items(self, job_id: int) -> list[Requeued]:
        with self._reading() as session:
            rows = session.execute(
                select(col(JobItem.index), col(Job.priority))
                .join(Job, col(Job.id) == col(JobItem.job_id))
                .where(col(JobItem.job_id) == job_id, col(JobItem.state) == "queued")
                .order_by(col(JobItem.index))
            ).all()
            return [Requeued(job_id, index, priority) for index, priority in rows]

    def cancel_job(self, job_id: int) -> JobPublic:
        """Stop a job: its queued items are cancelled, its running ones end as they will. A
        cancelled job is answered as it is (a cancel sent again, its answer lost, succeeds)."""
        now = utcnow()
        with self._writing() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            if job.state == "cancelled":
                return public_job(job)
            if job.state not in ("queued", "running"):
                raise Conflict(f"job {job_id} is {job.state}; only a queued or running job can be cancelled")
            session.execute(
                update(JobItem)
                .where(col(JobItem.job_id) == job_id, col(JobItem.state) == "queued")
                .values(state="cancelled", finished_at=now)
            )
            job.state, job.finished_at = "cancelled", now
            session.flush()
            return public_job(job)

    def retry_job(self, job_id: int) -> tuple[JobPublic, list[Requeued]]:
        """Queue a job's failed and dead items again, with their attempts from 0."""
        with self._writing() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            if job.state == "cancelled":
                raise Conflict(f"job {job_id} is cancelled")
            indexes = session.scalars(
                select(col(JobItem.index)).where(
                    col(JobItem.job_id) == job_id, col(JobItem.state).in_(("failed", "dead"))
                )
            ).all()
            if indexes:
                session.execute(
                    update(JobItem)
                    .where(col(JobItem.job_id) == job_id, col(JobItem.index).in_(indexes))
                    .values(state="queued", attempts=0, worker=None, finished_at=None, error=None)
                )
                job.failed -= len(indexes)
                job.state, job.finished_at = ("running" if job.started_at else "queued"), None
            session.flush()
            return public_job(job), [Requeued(job_id, index, job.priority) for index in indexes]

    def heartbeat(self, worker: str, concurrency: int) -> None:
        """``worker`` is alive now."""
        now = utcnow()
        with self._writing() as session:
            seen = session.execute(update(JobWorker).where(col(JobWorker.name) == worker).values(seen_at=now))
            if seen.rowcount == 1:  # type: ignore[attr-defined]
                return
        try:
            with self._writing() as session:
                session.add(JobWorker(name=worker, started_at=now, seen_at=now, concurrency=concurrency))
        except IntegrityError:  # another heartbeat of the same name came first
            self.heartbeat(worker, concurrency)

    def workers(self, seen_since: datetime) -> list[JobWorker]:
        with self._reading() as session:
            return list(
                session.scalars(
                    select(JobWorker)
                    .where(col(JobWorker.seen_at) >= seen_since)
                    .order_by(col(JobWorker.name))
                )
            )

    def job_item_counts(self) -> dict[str, int]:
        """Items by state, over every job kept."""
        with self._reading() as session:
            rows = session.execute(
                select(col(JobItem.state), func.count()).group_by(col(JobItem.state))
            ).all()
            return {state: int(n) for state, n in rows}

    def job_activity(self, since: datetime) -> tuple[int, int]:
        """Items ended since ``since``, and the retries (attempts past the first) of every item kept."""
        with self._reading() as session:
            ended = session.scalar(
                select(func.count())
                .select_from(JobItem)
                .where(col(JobItem.finished_at) >= since, col(JobItem.state).in_(ENDED))
            )
            retries = session.scalar(
                select(func.coalesce(func.sum(col(JobItem.attempts) - 1), 0)).where(col(JobItem.attempts) > 1)
            )
            return int(ended or 0), int(retries or 0)

    def prune_jobs(self, before: datetime) -> int:
        """Delete the jobs that ended before ``before``, their items and images with them."""
        with self._writing() as session:
            ids = session.scalars(
                select(col(Job.id)).where(
                    col(Job.finished_at) < before, col(Job.state).in_(("done", "failed", "cancelled"))
                )
            ).all()
            if ids:
                # By name too: SQLite cascades only with its foreign keys on.
                session.execute(delete(JobImage).where(col(JobImage.job_id).in_(ids)))
                session.execute(delete(JobItem).where(col(JobItem.job_id).in_(ids)))
                session.execute(delete(Job).where(col(Job.id).in_(ids)))
            return len(ids)
