"""One item of a job, done: recognised or enrolled with the same services as the API, and
ended as the database records it — done, failed at once (a problem of the image itself),
queued again after a backoff (a service that is down, a timeout), or dead once its retries
are spent."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from pydantic_core import to_jsonable_python

from orchestrator.api.problems import problem_of
from orchestrator.core.errors import Conflict, DuplicateIdentity, FacerecError, UpstreamUnavailable
from orchestrator.core.settings import JobSettings
from orchestrator.db.gallery import Gallery
from orchestrator.db.jobs import Claim
from orchestrator.db.tables import PersonCreate
from orchestrator.recognition.answers import best_matches
from orchestrator.recognition.log_writer import Origin
from orchestrator.recognition.serving import Serving

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    state: str
    """done, failed, dead, queued (to be tried again), or gone (another delivery ended it)."""
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    recognised: str | None = None


def backoff_s(settings: JobSettings, attempts: int) -> float:
    """The wait before attempt ``attempts + 1``: doubling from ``retry_backoff_s``, capped."""
    return float(min(settings.retry_backoff_s * 2 ** (attempts - 1), settings.retry_backoff_max_s))


def _transient(error: Exception) -> bool:
    """Worth another try later: a service down or slow, or anything not the image's fault."""
    return isinstance(error, UpstreamUnavailable) or not isinstance(error, FacerecError)


def _internal(error: Exception) -> dict[str, Any]:
    return problem_of(FacerecError(f"{type(error).__name__}: {error}"))


async def _recognise(serving: Serving, claim: Claim, default_top_k: int) -> Outcome:
    (filename, image), *_ = claim.images
    options = claim.options
    answer = await serving.recognition.recognize(
        image,
        top_k=options.get("top_k") or default_top_k,
        threshold=options.get("threshold"),
        max_faces=options.get("max_faces"),
        origin=Origin(
            principal=claim.principal, source="job", job_id=claim.job_id, filename=filename, request_id=None
        ),
    )
    best = best_matches(answer)
    return Outcome("done", answer.model_dump(mode="json"), recognised=best[0].name if best else None)


async def _enrol(serving: Serving, claim: Claim) -> Outcome:
    options = claim.options
    person = PersonCreate.model_validate(claim.params)
    try:
        enrolled = await serving.enrolment.enrol_person(
            person,
            claim.images,
            pick_largest=True,
            check_quality=options.get("quality", True),
            force=options.get("force", False),
        )
    except Conflict as error:
        if isinstance(error, DuplicateIdentity) or person.external_id is None:
            raise
        # Its external id is taken: by this item's own earlier attempt, cut off after the
        # enrolment and before it was recorded, or by someone already enrolled. Either way
        # the person is in the gallery once.
        return Outcome("done", {"external_id": person.external_id, "existing": True}, recognised=person.name)
    return Outcome("done", to_jsonable_python(enrolled), recognised=person.name)


async def do_item(
    serving: Serving, gallery: Gallery, settings: JobSettings, claim: Claim, default_top_k: int
) -> Outcome:
    """Do a claimed item and record how it ended; retries are left to the caller to send."""
    started = time.perf_counter()
    try:
        if claim.kind == "recognize":
            outcome = await _recognise(serving, claim, default_top_k)
        else:
            outcome = await _enrol(serving, claim)
    except Exception as error:
        problem = problem_of(error) if isinstance(error, FacerecError) else _internal(error)
        if not isinstance(error, FacerecError):
            log.exception("job %d item %d: unexpected failure", claim.job_id, claim.index)
        if not _transient(error):
            outcome = Outcome("failed", error=problem)
        elif claim.attempts <= settings.max_retries:
            outcome = Outcome("queued", error=problem)
        else:
            outcome = Outcome("dead", error=problem)
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    if outcome.state == "queued":
        back = await asyncio.to_thread(gallery.requeue_item, claim.job_id, claim.index, outcome.error or {})
        return outcome if back else Outcome("gone")
    ended = await asyncio.to_thread(
        partial(
            gallery.finish_item,
            claim.job_id,
            claim.index,
            outcome.state,  # type: ignore[arg-type]
            duration_ms=duration_ms,
            result=outcome.result,
            error=outcome.error,
            recognised=outcome.recognised,
        )
    )
    return outcome if ended else Outcome("gone")
