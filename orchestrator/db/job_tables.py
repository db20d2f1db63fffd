"""The tables of jobs (API.md, "Jobs"): a job, its items with their images, and the workers.

The database is the truth of a job, the broker only carries the news of it: an item is
claimed by one conditional UPDATE (``queued`` → ``running``) and finished by another
(``running`` → an end state), so a message delivered twice does the work at most once
more and writes its result once. The images stay in the database until the job's retention
passes: a worker on another machine needs nothing but the broker, Triton, the search
service and the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field as PydanticField
from sqlalchemy import Double, ForeignKeyConstraint, Index
from sqlmodel import Field

from orchestrator.db.tables import FILENAME_MAX, NAME_MAX, DbModel
from orchestrator.db.types import Blob, Json, UtcDateTime, utcnow

JobKind = Literal["recognize", "enrol"]
JobPriority = Literal["high", "normal", "low"]
PRIORITIES: tuple[JobPriority, ...] = ("high", "normal", "low")
"""Highest first: the order in which workers take from the queues."""
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
ItemState = Literal["queued", "running", "done", "failed", "dead", "cancelled"]
ENDED: tuple[ItemState, ...] = ("done", "failed", "dead", "cancelled")
WORKER_MAX = 200
TASK_ID_MAX = 64


class Job(DbModel, table=True):
    __tablename__ = "job"
    __table_args__ = (Index(None, "state", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    priority: str = Field(max_length=8)
    state: str = Field(default="queued", max_length=16)
    total: int
    done: int = 0
    failed: int = 0
    """Items failed or dead."""
    principal: str = Field(default="", max_length=NAME_MAX)
    options: dict[str, Any] = Field(default_factory=dict, sa_type=Json)
    """What each item is run with: recognize's ``top_k``, ``threshold``, ``max_faces``."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, index=True)
    started_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class JobItem(DbModel, table=True):
    __tablename__ = "job_item"
    __table_args__ = (Index(None, "state", "job_id"), Index(None, "worker", "state"))

    job_id: int = Field(foreign_key="job.id", ondelete="CASCADE", primary_key=True)
    index: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    filename: str = Field(max_length=FILENAME_MAX)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=Json)
    """An enrolment's person fields."""
    state: str = Field(default="queued", max_length=16)
    attempts: int = 0
    worker: str | None = Field(default=None, max_length=WORKER_MAX)
    task_id: str | None = Field(default=None, max_length=TASK_ID_MAX)
    """The broker's id of the delivery that last took it (Celery's task id, as Flower shows)."""
    started_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    duration_ms: float | None = Field(default=None, sa_type=Double)
    result: dict[str, Any] | None = Field(default=None, sa_type=Json)
    error: dict[str, Any] | None = Field(default=None, sa_type=Json)
    recognised: str | None = Field(default=None, max_length=NAME_MAX)
    """The best match's name (seed 003's ``recognized_name``), or the enrolled person's."""


class JobImage(DbModel, table=True):
    """An item's image (an enrolment may have several), until the job's retention passes."""

    __tablename__ = "job_image"
    __table_args__ = (
        ForeignKeyConstraint(["job_id", "index"], ["job_item.job_id", "job_item.index"], ondelete="CASCADE"),
    )

    job_id: int = Field(primary_key=True)
    index: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    position: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    filename: str = Field(max_length=FILENAME_MAX)
    data: bytes = Field(sa_type=Blob)


class JobWorker(DbModel, table=True):
    """A ``facerec worker`` and when it last said it was alive: a running item whose worker
    has been silent too long goes back to the queue."""

    __tablename__ = "job_worker"

    name: str = Field(primary_key=True, max_length=WORKER_MAX)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    seen_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    concurrency: int


class JobPublic(DbModel):
    job_id: int
    kind: JobKind
    state: JobState
    priority: JobPriority
    total: int
    done: int
    failed: int = PydanticField(description="items failed, or dead after their retries")
    progress: float = PydanticField(description="ended items over all, 0..1")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobItemPublic(DbModel):
    job_id: int
    index: int
    filename: str
    state: ItemState
    attempts: int
    worker: str | None
    task_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    recognised: str | None = PydanticField(description="the best match's name, or the person enrolled")
    result: dict[str, Any] | None = PydanticField(
        description="the recognize answer of the image, or the enrolment"
    )
    error: dict[str, Any] | None = PydanticField(description="a problem object")


def public_job(job: Job) -> JobPublic:
    ended = job.done + job.failed
    return JobPublic.model_validate(
        {**job.model_dump(), "job_id": job.id, "progress": round(ended / job.total, 4) if job.total else 1.0}
    )
