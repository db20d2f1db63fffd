"""Jobs (API.md, "Jobs"): a large batch of images uploaded once, queued, and done by
``facerec worker`` processes; its progress, its items' results, cancel, retry, dead letters."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile
from pydantic import BaseModel, Field

from orchestrator.api.deps import CurrentPrincipal, ResourcesDep, current_principal
from orchestrator.api.params import LeftOut, Offset, RowId
from orchestrator.api.responses import problems
from orchestrator.api.schemas import JobWorkers
from orchestrator.core.errors import Forbidden, ImageError, UpstreamUnavailable
from orchestrator.core.resources import Resources
from orchestrator.db.job_tables import ItemState, JobItemPublic, JobKind, JobPriority, JobPublic, JobState
from orchestrator.db.jobs import Requeued
from orchestrator.jobs.queue import send_item
from orchestrator.jobs.uploads import enrol_items, recognize_items
from orchestrator.jobs.workforce import waiting, worker_states
from orchestrator.pipeline.vision.decode import sniff_format

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(current_principal)], responses=problems(401)
)

Limit = Annotated[int, Query(ge=1, le=1000, description="items per page")]
INT32_MAX = 2**31 - 1
"""An item's index and an image's position are 32-bit integers in every database."""
ItemIndex = Annotated[int, Path(ge=0, le=INT32_MAX, description="the item's place in its job, from 0")]
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "application/octet-stream")
IMAGE_CONTENT = {kind: {"schema": {"type": "string", "contentMediaType": kind}} for kind in IMAGE_TYPES}


class JobPage(BaseModel):
    items: list[JobPublic] = Field(description="newest first")
    total: int


class ItemPage(BaseModel):
    items: list[JobItemPublic] = Field(description="in the job's order")
    total: int


def _broker(resources: Resources) -> Any:
    if resources.jobs is None:
        raise UpstreamUnavailable("jobs need a broker: this service runs without REDIS_URL")
    return resources.jobs


async def _send(resources: Resources, items: list[Requeued]) -> None:
    broker = _broker(resources)

    def send_all() -> None:
        for item in items:
            send_item(broker, item.job_id, item.index, item.priority)

    try:
        await asyncio.to_thread(send_all)
    except Exception as error:  # kombu's errors vary by transport: any means the broker is away
        raise UpstreamUnavailable(f"the job broker cannot be reached: {error}") from error


async def _files(uploads: list[UploadFile]) -> list[tuple[str, bytes]]:
    return [(upload.filename or f"image-{n}", await upload.read()) for n, upload in enumerate(uploads)]


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses=problems(400, 403, 413, 422, 503, why={503: "no broker (REDIS_URL), or it cannot be reached"}),
)
async def create_job(
    response: Response,
    resources: ResourcesDep,
    principal: CurrentPrincipal,
    kind: Annotated[JobKind, Form(description="recognize each image, or enrol each row of people.csv")],
    priority: Annotated[JobPriority, Form()] = "normal",
    files: Annotated[list[UploadFile] | None, File(description="images to recognise"), LeftOut()] = None,
    archive: Annotated[
        UploadFile | None,
        File(description="a zip: images to recognise, or people.csv and its photos to enrol"),
        LeftOut(),
    ] = None,
    top_k: Annotated[int | None, Form(ge=1, le=100), LeftOut()] = None,
    threshold: Annotated[float | None, Form(ge=-1, le=1), LeftOut()] = None,
    max_faces: Annotated[int | None, Form(ge=1, le=64), LeftOut()] = None,
    quality: Annotated[Literal["on", "off"], Form(description="enrol: the quality gate")] = "on",
    force: Annotated[bool, Form(description="enrol: even a face of someone already enrolled")] = False,
) -> Any:
    """Queue a job; 202 with its record, and its address in Location. The upload is stored
    (images in the database) before the answer: an accepted job survives any restart."""
    settings = resources.settings
    if kind == "enrol" and principal.role != "admin":
        raise Forbidden(
            f"an enrol job needs the admin role; {principal.described} has role {principal.role!r}"
        )
    _broker(resources)
    limits = (settings.jobs.max_items, settings.api.max_body_bytes, settings.jobs.max_body_bytes)
    packed = await archive.read() if archive is not None else None
    if kind == "enrol":
        items = await asyncio.to_thread(enrol_items, packed, *limits)
        options: dict[str, Any] = {"quality": quality == "on", "force": force}
    else:
        images = await _files(files or [])
        items = await asyncio.to_thread(recognize_items, images, packed, *limits)
        options = {"top_k": top_k, "threshold": threshold, "max_faces": max_faces}
    job = await asyncio.to_thread(resources.gallery.create_job, kind, priority, principal.tag, options, items)
    try:
        await _send(resources, [Requeued(job.job_id, index, priority) for index in range(job.total)])
    except UpstreamUnavailable:
        await asyncio.to_thread(resources.gallery.cancel_job, job.job_id)  # not accepted: not left queued
        raise
    response.headers["Location"] = f"/v1/jobs/{job.job_id}"
    log.info("job %d: %s of %d items at %s priority", job.job_id, kind, job.total, priority)
    return job


@router.get("", response_model=JobPage, responses=problems(422))
async def list_jobs(
    resources: ResourcesDep,
    state: Annotated[JobState | None, Query(), LeftOut()] = None,
    kind: Annotated[JobKind | None, Query(), LeftOut()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Any:
    jobs, total = await asyncio.to_thread(resources.gallery.list_jobs, state, kind, limit, offset)
    return JobPage(items=jobs, total=total)


@router.get("/dead-letters", response_model=ItemPage, responses=problems(422))
async def dead_letters(resources: ResourcesDep, limit: Limit = 100, offset: Offset = 0) -> Any:
    """Items of every job that failed on each of their attempts: retry them with their job's retry."""
    items, total = await asyncio.to_thread(resources.gallery.job_items, None, "dead", limit, offset)
    return ItemPage(items=items, total=total)


@router.get("/workers", response_model=JobWorkers)
async def job_workers(resources: ResourcesDep) -> Any:
    """The workers heard from in the last hour, whether each is alive and what it runs, and the
    messages waiting per priority: whether a queued job will be taken, and by whom. Any
    principal: the workers' names are already on the items they ran."""
    lost_after_s = resources.settings.jobs.lost_after_s
    workers = await asyncio.to_thread(worker_states, resources.gallery, lost_after_s)
    try:
        queues, queues_error = await waiting(resources.jobs), None
    except UpstreamUnavailable as error:  # the workers are still worth an answer
        queues, queues_error = None, str(error)
    return JobWorkers(items=workers, lost_after_s=lost_after_s, queues=queues, queues_error=queues_error)


@router.get("/{job_id}", response_model=JobPublic, responses=problems(404, 422))
async def get_job(job_id: RowId, resources: ResourcesDep) -> Any:
    return await asyncio.to_thread(resources.gallery.job, job_id)


@router.get("/{job_id}/items", response_model=ItemPage, responses=problems(404, 422))
async def job_items(
    job_id: RowId,
    resources: ResourcesDep,
    state: Annotated[ItemState | None, Query(), LeftOut()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    items, total = await asyncio.to_thread(resources.gallery.job_items, job_id, state, limit, offset)
    return ItemPage(items=items, total=total)


@router.get(
    "/{job_id}/items/{index}/image",
    response_class=Response,
    responses={
        200: {
            "description": "the image as uploaded, with its type: JPEG, PNG, WebP or BMP "
            "(application/octet-stream for bytes that are none of them, such as a corrupt upload)",
            "content": IMAGE_CONTENT,
        },
        **problems(404, 422, why={404: "no such job, item or image, or the job was pruned with its images"}),
    },
)
async def job_item_image(
    job_id: RowId,
    index: ItemIndex,
    resources: ResourcesDep,
    position: Annotated[
        int, Query(ge=0, le=INT32_MAX, description="which of an enrolment's photos, from 0")
    ] = 0,
) -> Response:
    """An item's uploaded image, kept in the database until the job's retention passes: a page
    draws the item's faces (its ``result``) over it."""
    filename, data = await asyncio.to_thread(resources.gallery.job_image, job_id, index, position)
    try:
        kind = f"image/{sniff_format(data)}"
    except ImageError:  # stored as uploaded: the item failed on it
        kind = "application/octet-stream"
    headers = {
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(filename, safe='')}",
        "Cache-Control": "private, max-age=3600",
        "X-Content-Type-Options": "nosniff",  # uploaded bytes: never read as anything but their type
    }
    return Response(content=data, media_type=kind, headers=headers)


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=problems(404, 409, 422))
async def cancel_job(job_id: RowId, resources: ResourcesDep) -> Any:
    """Its queued items are cancelled; those running end as they will."""
    return await asyncio.to_thread(resources.gallery.cancel_job, job_id)


@router.post("/{job_id}/retry", response_model=JobPublic, responses=problems(404, 409, 422, 503))
async def retry_job(job_id: RowId, resources: ResourcesDep) -> Any:
    """Queue its failed and dead items again, their attempts from 0; its queued items are sent
    again too (a delivery that is still on its way then finds them taken, and does nothing)."""
    _broker(resources)
    job, again = await asyncio.to_thread(resources.gallery.retry_job, job_id)
    queued = await asyncio.to_thread(resources.gallery.queued_items, job_id)
    await _send(resources, queued)
    log.info("job %d: %d failed or dead items queued again", job_id, len(again))
    return job
