"""Request and answer models that only the HTTP API has, with the examples shown in /docs.

The recognition answers are defined once, by the recognition layer, and imported here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from orchestrator.db.account_tables import PASSWORD_MAX, PASSWORD_MIN, Password, Username, UserPublic
from orchestrator.db.job_tables import JobPriority
from orchestrator.db.tables import (
    NAME_PATTERN,
    ApiKeyPublic,
    DuplicatePair,
    FacePublic,
    PersonPublic,
    PersonSummary,
    RecognitionLogPublic,
    Role,
    RolloutPublic,
)
from orchestrator.gallery.calibration import GalleryCalibration, histogram, scores_needed
from orchestrator.jobs.workforce import JobWorkerState
from orchestrator.pipeline.quality import Criterion
from orchestrator.recognition.answers import Box, RecognizeAnswer
from orchestrator.stats.host import MachineState, ProcessState
from orchestrator.stats.inference import TritonModelStatistics
from orchestrator.stats.live import MinuteTraffic, ReplicaTraffic
from orchestrator.stats.minutes import MinuteSummary, RouteRecent


class ProblemDetails(BaseModel):
    """The RFC 9457 members: what went wrong, in words for the caller."""

    type: str = Field(description="URI naming the kind of problem")
    title: str = Field(description="the same for every problem of this type")
    status: int = Field(ge=400, le=599, description="the HTTP status")
    detail: str = Field(description="what happened this time")


class InvalidField(BaseModel):
    loc: list[str | int] = Field(description="where: body, query, path or header, then the field")
    msg: str
    type: str


class FailedCriterion(BaseModel):
    """One enrolment quality criterion the face failed, with what was measured."""

    criterion: Criterion
    value: float = Field(description="the face's measure: pixels, sharpness, degrees or detector score")
    threshold: float = Field(description="the bound it missed (FACEREC_QUALITY__*; yaw and pitch either way)")
    message: str = Field(description="the same, in words")


class Problem(ProblemDetails):
    """Every error answer of the API, as ``application/problem+json``."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "https://facerec.dev/problems/not-found",
                "title": "Not found",
                "status": 404,
                "detail": "person 42 not found",
                "request_id": "3f1c0e5a9b6d4b7e8a2c1d0f9e8b7a6c",
            }
        }
    )
    request_id: str = Field(description="the X-Request-ID of the request, to find it in the logs")
    errors: list[InvalidField] | SkipJsonSchema[None] = Field(
        default=None, description="on a 422 for a request that does not validate: each field at fault"
    )
    reasons: list[FailedCriterion] | SkipJsonSchema[None] = Field(
        default=None,
        description="on a 422 face-quality (an enrolment): each quality criterion the face failed",
    )
    person: PersonSummary | SkipJsonSchema[None] = Field(
        default=None,
        description="on a 409 duplicate-identity (an enrolment): the other person the face matches",
    )
    similarity: float | SkipJsonSchema[None] = Field(
        default=None, description="on a 409 duplicate-identity: how well the face matches that person's"
    )


class BatchAnswer(BaseModel):
    results: list[RecognizeAnswer | ProblemDetails] = Field(
        description="one answer per image in order, or the problem of an image that failed"
    )


class EnrolledFace(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "face_id": 3,
                "person_id": 1,
                "box": [383.0, 90.0, 603.0, 405.0],
                "det_score": 0.9998,
                "quality": 0.97,
            }
        }
    )
    face_id: int
    person_id: int
    box: Box
    det_score: float
    quality: float


class PersonList(BaseModel):
    items: list[PersonPublic]
    total: int


class FaceList(BaseModel):
    items: list[FacePublic]


class NewKey(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"name": "kiosk-3", "role": "recognize"}})
    # The gallery applies the pattern's rule (clean_name), in words.
    name: str = Field(min_length=1, max_length=100, json_schema_extra={"pattern": NAME_PATTERN})
    role: Literal["admin", "recognize"]


class CreatedKey(ApiKeyPublic):
    key: str = Field(description="the key itself; shown only in this answer")


class KeyList(BaseModel):
    items: list[ApiKeyPublic]


class NewRollout(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"version": "2"}})
    version: str = Field(pattern=r"^[1-9][0-9]{0,8}$", description="the arcface version to switch to")


class ModelVersion(BaseModel):
    """One arcface version in Triton's model repository, loaded or not."""

    version: str
    state: Literal["READY", "UNAVAILABLE", "LOADING"] = Field(
        description="in the Triton this replica calls; a version it has not loaded is UNAVAILABLE"
    )
    source: Literal["fetched", "imported", "derived"] = Field(
        description="fetched: version 1, from the model package; derived: built from version 1 "
        "(facerec models derive); imported: facerec models import or import-pth"
    )
    created_at: datetime | None = Field(
        description="when it was added to the repository; null for a version only Triton reports"
    )
    origin: str | None = Field(
        default=None,
        description="what it was made from: the package and file, the derived kind, the imported file",
    )


class ActiveModel(BaseModel):
    name: str
    version: str


class ModelsAnswer(BaseModel):
    active: ActiveModel
    versions: list[ModelVersion]


class DependencyCheck(BaseModel):
    ok: bool
    detail: str = Field(description='"ok", or what failed')


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, DependencyCheck] = Field(description="triton, search, database, shutdown")


class Liveness(BaseModel):
    status: Literal["ok"]


class RecentRoutes(BaseModel):
    """This replica's requests of the current minute and the four before it, per route."""

    window_s: float = Field(description="the seconds they cover (less after a recent start)")
    items: list[RouteRecent]


class DetailedHealth(BaseModel):
    """Readiness and what this replica knows: model, gallery, cache, Triton's statistics, the
    process and the machine, and its recent requests per route."""

    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "degraded"]
    checks: dict[str, DependencyCheck]
    process: ProcessState
    machine: MachineState
    routes: RecentRoutes


class LogPage(BaseModel):
    items: list[RecognitionLogPublic] = Field(description="newest first")
    total: int = Field(description="entries that pass the filters")


class StatsAnswer(BaseModel):
    window: str
    since: datetime = Field(description="the first minute of the window (inclusive)")
    until: datetime = Field(description="the time of the answer; a minute is written once it is over")
    items: list[MinuteSummary] = Field(description="oldest minute first, routes in order within one")


class ScoreHistogram(BaseModel):
    edges: list[float] = Field(description="bin edges over cosine similarity, −1 to 1 (one more than counts)")
    counts: list[int]


class ScoreCounts(BaseModel):
    count: int = Field(description="faces with such a score")
    histogram: ScoreHistogram


class CalibrationAnswer(BaseModel):
    """A model version's gallery calibration: the threshold in force and the scores it rests on."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "model_version": "1",
                "target_far": 0.0001,
                "threshold": 0.4137,
                "source": "gallery",
                "shipped_threshold": 0.38,
                "scores_needed": 29956,
                "estimated_far": 0.0000998,
                "estimated_frr": 0.012,
                "impostor": {"count": 41250, "histogram": {"edges": [-1.0, -0.96], "counts": [0]}},
                "genuine": {"count": 40110, "histogram": {"edges": [-1.0, -0.96], "counts": [0]}},
            }
        }
    )
    model_version: str
    target_far: float | None = Field(
        description="FACEREC_MATCH__TARGET_FAR; null: none, the shipped threshold stands"
    )
    threshold: float = Field(description="the threshold in force for this version when a request gives none")
    source: Literal["gallery", "shipped"] = Field(
        description="gallery: set by the impostor scores for the target; shipped: FACEREC_MATCH_THRESHOLD "
        "(no target, or fewer impostor scores than scores_needed)"
    )
    shipped_threshold: float = Field(description="FACEREC_MATCH_THRESHOLD")
    scores_needed: int | None = Field(
        description="impostor scores the target needs before the gallery can set the threshold"
    )
    estimated_far: float = Field(
        description="the 95 % upper bound of the false-accept rate at the threshold (1 without scores)"
    )
    estimated_frr: float | None = Field(
        description="the share of genuine scores below the threshold; null without any"
    )
    impostor: ScoreCounts = Field(description="each face's best similarity to a face of another person")
    genuine: ScoreCounts = Field(description="each face's best similarity to another face of its person")

    @classmethod
    def of(cls, calibration: GalleryCalibration) -> CalibrationAnswer:
        """The answer for ``calibration``; histograms cost O(scores): build it off the event loop."""

        def counts(scores: np.ndarray) -> ScoreCounts:
            drawn = histogram(scores)
            return ScoreCounts(
                count=int(scores.size), histogram=ScoreHistogram(edges=drawn.edges, counts=drawn.counts)
            )

        target = calibration.target_far
        return cls(
            model_version=calibration.model_version,
            target_far=target,
            threshold=calibration.threshold,
            source=calibration.source,
            shipped_threshold=calibration.shipped_threshold,
            scores_needed=None if target is None else scores_needed(target),
            estimated_far=calibration.far(calibration.threshold),
            estimated_frr=calibration.frr(),
            impostor=counts(calibration.impostor),
            genuine=counts(calibration.genuine),
        )


class DuplicateList(BaseModel):
    items: list[DuplicatePair] = Field(description="best similarity first")
    total: int = Field(description="pairs at or above the threshold in force")


class Login(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"username": "ada", "password": "correct horse"}})
    username: Username = Field(description="case does not matter")
    # No length rule beyond the bound: a password set under an older rule still signs in.
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class Registration(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"username": "ada", "password": "correct horse"}})
    username: Username = Field(description="letters, digits and ._@-; stored lower-cased")
    password: Password = Field(description=f"{PASSWORD_MIN} to {PASSWORD_MAX} characters")


class NewUser(Registration):
    model_config = ConfigDict(
        json_schema_extra={"example": {"username": "ada", "password": "correct horse", "role": "admin"}}
    )
    role: Role


class UserList(BaseModel):
    items: list[UserPublic]


class SignedIn(BaseModel):
    username: str
    role: Role
    csrf_token: str = Field(description="send it as X-CSRF-Token with POST, PUT, PATCH and DELETE")
    expires_at: datetime


class Me(BaseModel):
    """Who the request was signed in as: an API key or a user."""

    kind: Literal["key", "user"]
    id: int
    role: Role
    name: str = Field(description="the key's name or the user's username")


class RolloutPage(BaseModel):
    items: list[RolloutPublic] = Field(description="newest first: the latest rollout is the first")
    total: int


class UserChange(BaseModel):
    """What an admin changes of a user: its role, its password, or both."""

    model_config = ConfigDict(json_schema_extra={"example": {"role": "admin"}})
    role: Role | None = Field(default=None, description="takes effect at the user's next request")
    password: Password | None = Field(
        default=None,
        description=f"{PASSWORD_MIN} to {PASSWORD_MAX} characters; ends the user's sessions "
        "(but the one asking, when an admin changes its own)",
    )


class PasswordChange(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"example": {"current_password": "correct horse", "new_password": "battery staple"}}
    )
    # As at login: a password set under an older rule is still the current one.
    current_password: str = Field(min_length=1, max_length=PASSWORD_MAX)
    new_password: Password = Field(description=f"{PASSWORD_MIN} to {PASSWORD_MAX} characters")


class JobWorkers(BaseModel):
    """The job workers heard from in the last hour, and the messages waiting for them."""

    items: list[JobWorkerState] = Field(description="by name")
    lost_after_s: float = Field(
        description="a worker silent this long is not alive: its items are queued again"
    )
    queues: dict[JobPriority, int] | None = Field(
        description="messages waiting per priority; null without a broker, or when it does not answer"
    )
    queues_error: str | None = Field(description="why the queues could not be read")


class GallerySize(BaseModel):
    faces: int = Field(description="faces enrolled")
    people: int


class TrafficWindow(BaseModel):
    since: datetime = Field(description="the first minute (inclusive)")
    until: datetime = Field(
        description="the minute after the last: minutes over for FACEREC_LOG__STATS_FLUSH_S and 2 s "
        "more, so that every replica has written them"
    )
    minutes: list[MinuteTraffic] = Field(description="every minute, oldest first, summed over the replicas")


class ReplicaNow(ReplicaTraffic):
    """The replica that answered: with several, each poll may land on another."""

    pid: int
    cache: dict[str, Any] = Field(
        description="its recognition cache: state, and hits, misses and errors since it started"
    )


class LiveStats(BaseModel):
    """The dashboard's one answer. A part that cannot be read now is null, and ``errors`` says why."""

    at: datetime = Field(description="the time of the answer")
    window: TrafficWindow | None = Field(description="requests per minute over every replica (the database)")
    replica: ReplicaNow
    triton: list[TritonModelStatistics] | None = Field(
        description="per model version, cumulative since Triton started: difference two answers for the "
        "batch size and queue time between them"
    )
    queues: dict[JobPriority, int] | None = Field(description="job messages waiting per priority")
    workers: list[JobWorkerState] | None
    gallery: GallerySize | None
    process: ProcessState | None
    machine: MachineState | None
    errors: dict[str, str] = Field(
        description="part (window, triton, queues, workers, gallery, host) → what went wrong; "
        "empty when every part answered"
    )
