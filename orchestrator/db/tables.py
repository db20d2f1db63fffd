"""The gallery's tables and the read models answered by the API.

SQLModel classes split as ``XBase / XCreate / XUpdate / X(table=True) / XPublic``. The
tables live in their own metadata with a naming convention, so constraint names are the
same on every backend and match the migration, and nothing else that uses SQLModel's
shared metadata leaks into ours.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, StringConstraints
from pydantic import Field as PydanticField
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import CheckConstraint, Double, Index, MetaData, String, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel
from typing_extensions import TypeAliasType

from orchestrator.db.types import (
    AddressColumn,
    Blob,
    ExternalIdColumn,
    GenderColumn,
    Json,
    UtcDateTime,
    utcnow,
)

NAME_MAX = 200
AGE_MAX = 150
GENDER_MAX = 32
ADDRESS_MAX = 500
_SPACES = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""Every character ``str.isspace`` (so ``str.strip``) counts, as a regex class body."""
NO_NUL = r"^[^\x00]*$"
"""A text without NUL, which PostgreSQL cannot store in a text column (its error was a 500)."""
NAME_PATTERN = rf"^[^\x00]*[^\x00{_SPACES}][^\x00]*$"
"""A name: no NUL, and one character that ``str.strip`` keeps. In the regex syntax Python,
Rust (pydantic) and JSON Schema share, so the spec states exactly the rule the server applies."""
ATTRIBUTES_MAX_BYTES = 16 * 1024
Role = Literal["admin", "recognize"]
ROLES: tuple[Role, ...] = ("admin", "recognize")
DEFAULT_MODEL_VERSION = "1"
DEFAULT_COLLECTION = "arcface-v1-g1"

metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class DbModel(SQLModel, registry=registry(metadata=metadata)):
    """Root of every model here; binds the tables to :data:`metadata`."""


# The checks are plain functions so the pydantic models (422 at the HTTP edge) and the
# gallery (InvalidRequest for anything built without validation) share one rule.
def _no_nul(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    return value


def clean_name(value: str) -> str:
    if not isinstance(value, str):
        raise ValueError("name must be a string")
    value = _no_nul(value, "name").strip()
    if not value:
        raise ValueError("name must not be empty")
    if len(value) > NAME_MAX:
        raise ValueError(f"name is longer than {NAME_MAX} characters")
    return value


def clean_external_id(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("external_id must be a string")
    value = _no_nul(value, "external_id").strip()
    if len(value) > NAME_MAX:
        raise ValueError(f"external_id is longer than {NAME_MAX} characters")
    return value or None


def clean_age(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("age must be a whole number")
    if not 0 <= value <= AGE_MAX:
        raise ValueError(f"age must be 0..{AGE_MAX}")
    return value


def _clean_text(value: str | None, what: str, limit: int) -> str | None:
    """A short optional text: stripped, and None when nothing is left (as for external_id)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    value = _no_nul(value, what).strip()
    if len(value) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    return value or None


def clean_gender(value: str | None) -> str | None:
    return _clean_text(value, "gender", GENDER_MAX)


def clean_address(value: str | None) -> str | None:
    return _clean_text(value, "address", ADDRESS_MAX)


def clean_attributes(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("attributes must be a JSON object")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"attributes are not valid JSON: {exc}") from None
    if len(text.encode()) > ATTRIBUTES_MAX_BYTES:
        raise ValueError(f"attributes exceed {ATTRIBUTES_MAX_BYTES} bytes of JSON")
    _no_nul_within(value)
    return value


def _no_nul_within(value: Any) -> None:
    """No NUL in any key or string of a JSON value (PostgreSQL's JSON types refuse it too)."""
    if isinstance(value, str):
        _no_nul(value, "attributes")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key, "attributes")
            _no_nul_within(item)
    elif isinstance(value, list):
        for item in value:
            _no_nul_within(item)


# Stripped after the constraints, which the OpenAPI spec states, apply to the text as sent:
# "  x  " is the name "x"; 201 characters are too many even if some are spaces.
# The patterns are for the spec; the clean_* rules apply them, with messages a person reads.
PersonName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=NAME_MAX),
    PydanticField(json_schema_extra={"pattern": NAME_PATTERN}),
    AfterValidator(clean_name),
]
ExternalId = Annotated[
    Annotated[
        str, StringConstraints(max_length=NAME_MAX), PydanticField(json_schema_extra={"pattern": NO_NUL})
    ]
    | None,
    AfterValidator(clean_external_id),
]


def _a_number(value: Any) -> Any:
    # JSON Schema's integer: 42 and 42.0, not "42" or true (which pydantic's lax int would take).
    if isinstance(value, str | bool):
        raise ValueError("age must be a whole number")
    return value


Age = Annotated[
    Annotated[int, PydanticField(ge=0, le=AGE_MAX), BeforeValidator(_a_number)] | None,
    AfterValidator(clean_age),
]
Gender = Annotated[
    Annotated[
        str, StringConstraints(max_length=GENDER_MAX), PydanticField(json_schema_extra={"pattern": NO_NUL})
    ]
    | None,
    AfterValidator(clean_gender),
]
Address = Annotated[
    Annotated[
        str, StringConstraints(max_length=ADDRESS_MAX), PydanticField(json_schema_extra={"pattern": NO_NUL})
    ]
    | None,
    AfterValidator(clean_address),
]
_Text = Annotated[str, PydanticField(json_schema_extra={"pattern": NO_NUL})]
AttributeName = TypeAliasType("AttributeName", _Text)
AttributeValue = TypeAliasType(
    "AttributeValue",
    "_Text | int | float | bool | list[AttributeValue] | dict[AttributeName, AttributeValue] | None",
)
"""Any JSON value, its texts without NUL: named, so the spec can state the rule at any depth."""
Attributes = Annotated[dict[AttributeName, AttributeValue], AfterValidator(clean_attributes)]
ATTRIBUTES = f"any JSON object, at most {ATTRIBUTES_MAX_BYTES} bytes of it, no NUL in its texts"


AGE = f"whole years, 0..{AGE_MAX}"
TEXT = "stripped; empty means none"


class PersonBase(DbModel):
    name: PersonName = Field(max_length=NAME_MAX)  # the column's length; the rules are in the type
    external_id: ExternalId = Field(default=None, max_length=NAME_MAX)
    age: Age = Field(default=None, index=True, description=AGE)
    gender: Gender = Field(default=None, index=True, sa_type=GenderColumn, description=TEXT)
    address: Address = Field(default=None, index=True, sa_type=AddressColumn, description=TEXT)
    attributes: Attributes = Field(default_factory=dict, sa_type=Json, description=ATTRIBUTES)


class PersonCreate(PersonBase):
    pass


class PersonUpdate(DbModel):
    """Only the fields that are set change; ``attributes`` replaces the whole object."""

    # Not null: a name can be changed, not removed (the spec says so, the gallery checks it).
    name: PersonName | SkipJsonSchema[None] = None
    external_id: ExternalId = None
    age: Age = Field(default=None, description=AGE + "; null removes it")
    gender: Gender = Field(default=None, description=TEXT + "; null removes it")
    address: Address = Field(default=None, description=TEXT + "; null removes it")
    attributes: Attributes | None = Field(default=None, description=ATTRIBUTES + "; null empties it")


class Person(PersonBase, table=True):
    __tablename__ = "person"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, max_length=NAME_MAX, unique=True, sa_type=ExternalIdColumn)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class PersonSummary(DbModel):
    """A person's own fields: what a recognition match carries."""

    id: int
    name: str
    external_id: str | None
    age: int | None
    gender: str | None
    address: str | None
    attributes: dict[str, Any]


class PersonPublic(PersonSummary):
    face_count: int
    created_at: datetime


class Face(DbModel, table=True):
    __tablename__ = "face"
    # Face ids are index ids: SQLite must never hand out the id of a deleted face again.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", ondelete="CASCADE", index=True)
    model_version: str = Field(max_length=64)
    """The embedder version at enrolment."""
    crop_png: bytes = Field(sa_type=Blob)
    """The aligned 112×112 crop, PNG: what a new model version re-embeds."""
    image_sha256: str = Field(max_length=64, index=True)
    # Double: MySQL's FLOAT is single precision and would not give back what was stored.
    quality: float = Field(sa_type=Double)
    det_score: float = Field(sa_type=Double)
    box: list[float] = Field(sa_type=Json)
    """[x1, y1, x2, y2] in the enrolled image's pixels."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class FacePublic(DbModel):
    face_id: int
    person_id: int
    created_at: datetime
    model_version: str
    quality: float
    det_score: float
    box: list[float]


class FaceEmbedding(DbModel, table=True):
    """One row per embedder version that embedded a face; a rollout adds a version."""

    __tablename__ = "face_embedding"
    # Keyset pagination walks one version in face id order; the primary key leads with
    # face_id for the cascade from face.
    __table_args__ = (Index(None, "model_version", "face_id"),)

    face_id: int = Field(foreign_key="face.id", ondelete="CASCADE", primary_key=True)
    model_version: str = Field(max_length=64, primary_key=True)
    embedding: bytes = Field(sa_type=Blob)
    """float32, little-endian, ``dim`` values."""
    dim: int


class FaceScore(DbModel, table=True):
    """A face's best similarity to a face of another person (impostor) and to another face of
    its own person (genuine), under one embedder version: what the calibration counts.

    The faces that gave them have no foreign key: when one is deleted, the faces it scored
    are searched again (``gallery/score_keeper.py``), found through these two indexes.
    """

    __tablename__ = "face_score"
    __table_args__ = (
        Index(None, "model_version", "impostor_face_id"),
        Index(None, "model_version", "genuine_face_id"),
    )

    face_id: int = Field(foreign_key="face.id", ondelete="CASCADE", primary_key=True)
    model_version: str = Field(max_length=64, primary_key=True)
    impostor: float | None = Field(default=None, sa_type=Double)
    impostor_face_id: int | None = None
    genuine: float | None = Field(default=None, sa_type=Double)
    genuine_face_id: int | None = None


class DuplicatePair(DbModel):
    """Two people with faces that match each other: perhaps one person enrolled twice."""

    people: list[PersonSummary] = PydanticField(description="the two people, lower id first")
    similarity: float = PydanticField(description="the best similarity of a face of one to one of the other")
    face_ids: list[int] = PydanticField(description="the two faces giving it, in the order of people")


class ApiKey(DbModel, table=True):
    __tablename__ = "api_key"
    __table_args__ = (CheckConstraint("role IN ('admin', 'recognize')", name="role"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=NAME_MAX)
    role: str = Field(sa_type=String(16))
    key_hash: str = Field(max_length=64, unique=True)
    """sha256 hex of the key; the key itself is never stored."""
    prefix: str = Field(max_length=8)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ApiKeyPublic(DbModel):
    id: int
    name: str
    role: Role
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


LogSource = Literal["api", "job"]
LogStatus = Literal["ok", "error"]
LogDecision = Literal["match", "unknown", "none"]
"""A log filter: a face matched; a face was unknown; no face was found (an answer without one)."""
LOG_TEXT_MAX = 500
FILENAME_MAX = 255


class RecognitionLog(DbModel, table=True):
    """One recognition of one image, answered or failed, from the API or a job (API.md's log)."""

    __tablename__ = "recognition_log"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, index=True)
    request_id: str | None = Field(default=None, max_length=64)
    source: str = Field(default="api", max_length=8)
    job_id: int | None = None
    principal: str = Field(default="", max_length=NAME_MAX)
    """Who asked: ``key:<id>`` for an API key, ``user:<id>`` for a user."""
    api_key_id: int | None = Field(default=None, foreign_key="api_key.id", ondelete="SET NULL")
    filename: str | None = Field(default=None, max_length=FILENAME_MAX)
    status: str = Field(default="ok", max_length=8)
    error_type: str | None = Field(default=None, max_length=64)
    error_detail: str | None = Field(default=None, max_length=LOG_TEXT_MAX)
    image_sha256: str = Field(max_length=64)
    face_count: int
    matched_faces: int = 0
    """Faces whose decision was a match: what the decision filter reads."""
    model_version: str = Field(max_length=64)
    took_ms: float = Field(sa_type=Double)
    cached: bool = False


class RecognitionMatch(DbModel, table=True):
    """A face of a logged recognition that matched a person, with the name it had then.

    No foreign key to the person: the log keeps what was answered after the person is gone.
    """

    __tablename__ = "recognition_match"
    __table_args__ = (Index(None, "person_id", "log_id"),)

    log_id: int = Field(foreign_key="recognition_log.id", ondelete="CASCADE", primary_key=True)
    position: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    """The matched face's place in the answer's faces (largest first)."""
    person_id: int
    name: str = Field(max_length=NAME_MAX)
    similarity: float = Field(sa_type=Double)


class LogMatch(DbModel):
    person_id: int
    name: str
    similarity: float


class RecognitionLogCreate(DbModel):
    """A log entry as the recognition service makes it; the gallery writes it in batches."""

    created_at: datetime = Field(default_factory=utcnow)
    request_id: str | None = None
    source: LogSource = "api"
    job_id: int | None = None
    principal: str = ""
    api_key_id: int | None = None
    filename: str | None = None
    status: LogStatus = "ok"
    error_type: str | None = None
    error_detail: str | None = None
    image_sha256: str
    faces: int = 0
    matches: list[LogMatch] = Field(default_factory=list)
    """The best match of each face that matched, in the answer's face order."""
    model_version: str = ""
    took_ms: float
    cached: bool = False


class RecognitionLogPublic(DbModel):
    id: int
    created_at: datetime
    request_id: str | None
    source: LogSource
    job_id: int | None
    principal: str
    filename: str | None
    status: LogStatus
    error_type: str | None = PydanticField(
        description="on an error: its kind, e.g. ImageError, UpstreamUnavailable"
    )
    error_detail: str | None = PydanticField(description="on an error: what the caller was told")
    faces: int = PydanticField(description="faces found")
    matches: list[LogMatch] = PydanticField(description="the best match of each face that matched")
    took_ms: float
    model_version: str
    cached: bool


class RequestMinute(DbModel, table=True):
    """One replica's requests to one route in one minute, written once the minute is over.

    Replicas write their own rows and a query sums them. Percentiles do not add up, so each
    row keeps a latency histogram over fixed buckets (``orchestrator/stats/latency.py``);
    histograms add up, and percentiles are read from the sum.
    """

    __tablename__ = "request_minute"
    __table_args__ = (UniqueConstraint("minute", "route", "replica"),)

    id: int | None = Field(default=None, primary_key=True)
    minute: datetime = Field(sa_type=UtcDateTime)
    """The minute's start, UTC."""
    route: str = Field(max_length=NAME_MAX)
    """Method and route template: ``POST /v1/recognize``."""
    replica: str = Field(max_length=NAME_MAX)
    requests: int
    errors: int
    """Answers with a status of 400 or more."""
    server_errors: int
    """Answers with a status of 500 or more."""
    faces: int
    cache_hits: int
    latency: list[int] = Field(sa_type=Json)
    """Requests per latency bucket, one more than the bucket bounds (the last: above them all)."""
    max_ms: float = Field(sa_type=Double)


class RequestMinuteSum(DbModel):
    """One route's minute summed over the replicas that served it; the histogram too."""

    minute: datetime
    route: str
    requests: int
    errors: int
    server_errors: int
    faces: int
    cache_hits: int
    latency: list[int]
    max_ms: float
    replicas: int


RolloutState = Literal[
    "pending", "loading", "reembedding", "switching", "draining", "done", "failed", "rolled_back"
]
ROLLOUT_FINISHED: tuple[RolloutState, ...] = ("done", "failed", "rolled_back")
RolloutKind = Literal["rollout", "rebuild"]
"""``rebuild``: the live version into a new collection from the stored embeddings (a repair)."""


class Rollout(DbModel, table=True):
    """One switch of the embedder to another version, step by step (API.md's states)."""

    __tablename__ = "rollout"

    id: int | None = Field(default=None, primary_key=True)
    from_version: str = Field(max_length=64)
    to_version: str = Field(max_length=64)
    collection: str = Field(max_length=200)
    """The search collection built for ``to_version``."""
    from_collection: str = Field(default="", max_length=200)
    """The live collection when it started: where an undo goes back to."""
    kind: str = Field(default="rollout", max_length=16)
    reverses: int | None = None
    """The finished rollout this one reverses: marked ``rolled_back`` when this is done."""
    state: str = Field(default="pending", max_length=16)
    progress: float = Field(default=0.0, sa_type=Double)
    error: str | None = Field(default=None, max_length=2000)
    owner: str | None = Field(default=None, max_length=200)
    """The orchestrator process running it (host:pid:nonce)."""
    lease_expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    """Renewed by its owner while it runs; once past, any replica may take it over."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class RolloutPublic(DbModel):
    rollout_id: int
    kind: RolloutKind
    from_version: str
    to_version: str
    collection: str
    from_collection: str
    reverses: int | None
    state: RolloutState
    progress: float
    error: str | None
    owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class GalleryState(DbModel, table=True):
    """The single row (id 1) naming what is live; the migration inserts it."""

    __tablename__ = "gallery_state"
    __table_args__ = (CheckConstraint("id = 1", name="singleton"),)

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    gallery_id: str = Field(max_length=32)
    """Random, fixed at creation: keeps galleries sharing one cache server apart."""
    generation: int = 1
    """Bumped by every enrol/delete; part of the recognition cache key."""
    active_model_version: str = Field(default=DEFAULT_MODEL_VERSION, max_length=64)
    active_collection: str = Field(default=DEFAULT_COLLECTION, max_length=200)
    pending_model_version: str | None = Field(default=None, max_length=64)
    """The version a rollout is re-embedding into, until it becomes active."""
    pending_collection: str | None = Field(default=None, max_length=200)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class GalleryStatePublic(DbModel):
    gallery_id: str
    generation: int
    active_model_version: str
    active_collection: str
    pending_model_version: str | None
    pending_collection: str | None
    updated_at: datetime


# The job tables live in their own module and in this metadata: imported here so that every
# user of the metadata (the migrations, their test) sees them.
from orchestrator.db import job_tables as _job_tables  # noqa: E402, F401
