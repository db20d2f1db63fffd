"""Each domain error's problem: status, title, type, headers; rendered by the one handler."""

from __future__ import annotations

import inspect

import httpx
import pytest
from fastapi import FastAPI

from orchestrator.api import problems
from orchestrator.api.problems import RequestTooLarge, problem_of, problem_type
from orchestrator.core import errors
from orchestrator.core.errors import (
    Conflict,
    DuplicateIdentity,
    FaceCountError,
    FacerecError,
    Forbidden,
    ImageError,
    ImageTooLarge,
    InvalidRequest,
    NotFound,
    QualityReason,
    QualityRejected,
    TooManyAttempts,
    Unauthorized,
    UnsupportedImage,
    UpstreamUnavailable,
)

pytestmark = pytest.mark.unit

BASE = "https://facerec.dev/problems/"

ADA = {"id": 3, "name": "Ada", "external_id": None, "age": None, "gender": None, "address": None,
       "attributes": {}}  # fmt: skip

# error, status, title, slug, headers
CASES: list[tuple[FacerecError, int, str, str, dict[str, str]]] = [
    (FacerecError("boom"), 500, "Internal error", "internal", {}),
    (NotFound("person 3 does not exist"), 404, "Not found", "not-found", {}),
    (Conflict("a person with external_id 'x' exists"), 409, "Conflict", "conflict", {}),
    (DuplicateIdentity("the face matches 'Ada' (person 3)", ADA, 0.91), 409,
     "Duplicate identity", "duplicate-identity", {}),
    (InvalidRequest("17 images sent"), 422, "Invalid request", "invalid-request", {}),
    (Unauthorized(), 401, "Unauthorized", "unauthorized", {"www-authenticate": "X-API-Key"}),
    (Unauthorized("the API key is unknown or revoked"), 401, "Unauthorized", "unauthorized",
     {"www-authenticate": "X-API-Key"}),
    (Forbidden("this needs an admin key"), 403, "Forbidden", "forbidden", {}),
    (ImageError("cannot decode"), 400, "Corrupt image", "corrupt-image", {}),
    (UnsupportedImage("GIF is not supported"), 415, "Unsupported image type", "unsupported-image", {}),
    (ImageTooLarge("40000 × 40000 pixels"), 413, "Image too large", "image-too-large", {}),
    (FaceCountError("no face found"), 422, "Unexpected number of faces", "face-count", {}),
    (QualityRejected("too blurred", [QualityReason("sharpness", 7.5, 25.0, "blurred")]), 422,
     "Face quality too low", "face-quality", {}),
    (UpstreamUnavailable("triton down"), 503, "Service unavailable", "upstream-unavailable",
     {"retry-after": "1"}),
    (UpstreamUnavailable("busy", retry_after_s=7), 503, "Service unavailable", "upstream-unavailable",
     {"retry-after": "7"}),
    (RequestTooLarge("the body is 30000000 bytes"), 413, "Request too large", "request-too-large", {}),
    (TooManyAttempts("too many failed logins", retry_after_s=42), 429, "Too many attempts",
     "too-many-attempts", {"retry-after": "42"}),
]  # fmt: skip
IDS = [f"{type(c[0]).__name__}-{c[1]}-{i}" for i, c in enumerate(CASES)]


@pytest.mark.parametrize(("error", "status", "title", "slug", "headers"), CASES, ids=IDS)
def test_every_error_maps_to_its_problem(
    error: FacerecError, status: int, title: str, slug: str, headers: dict[str, str]
) -> None:
    kind = problem_type(error)
    assert (kind.status, kind.title, kind.slug, kind.uri) == (status, title, slug, BASE + slug)
    assert {k.lower(): v for k, v in kind.headers(error).items()} == headers
    assert problem_of(error) == {
        "type": BASE + slug,
        "title": title,
        "status": status,
        "detail": error.detail,
    }


def test_every_error_of_the_domain_has_its_own_entry() -> None:
    """A new domain error without an entry would quietly answer as its parent (or 500)."""
    domain = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, FacerecError) and cls.__module__ == errors.__name__
    }
    assert domain <= set(problems.PROBLEM_TYPES)
    assert {type(case[0]) for case in CASES} == set(problems.PROBLEM_TYPES)


def test_domain_errors_know_nothing_of_http() -> None:
    for error, *_ in CASES:
        assert not any(hasattr(error, name) for name in ("status", "slug", "title", "headers", "to_problem"))


def test_a_subclass_without_an_entry_answers_as_its_nearest_ancestor() -> None:
    class TruncatedImage(ImageError):
        pass

    class Busy(UpstreamUnavailable):
        pass

    assert problem_type(TruncatedImage("ends early")).slug == "corrupt-image"
    assert problem_of(Busy("queue full", retry_after_s=3))["status"] == 503
    assert problem_type(Busy("queue full", retry_after_s=3)).headers(Busy("x", retry_after_s=3)) == {
        "Retry-After": "3"
    }


def test_something_that_is_not_a_domain_error_has_no_problem() -> None:
    with pytest.raises(TypeError):
        problem_type(ValueError("x"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("error", "status", "title", "slug", "headers"), CASES, ids=IDS)
async def test_the_one_handler_renders_problem_json(
    error: FacerecError, status: int, title: str, slug: str, headers: dict[str, str]
) -> None:
    app = FastAPI()
    problems.install(app)

    @app.get("/fail")
    async def fail() -> None:
        raise error

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/fail")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    for name, value in headers.items():
        assert response.headers[name] == value
    assert ("www-authenticate" in response.headers) == (status == 401)
    assert ("retry-after" in response.headers) == (status in (429, 503))
    assert response.json() == {
        "type": BASE + slug,
        "title": title,
        "status": status,
        "detail": error.detail,
        "request_id": "-",  # no request-context middleware in this app
        **problem_type(error).members(error),
    }


def test_a_quality_refusal_carries_each_reason_measured() -> None:
    reasons = [
        QualityReason("size", 41.5, 64.0, "the face is 41.5 pixels across, under 64"),
        QualityReason("yaw", -48.2, 35.0, "turned"),
    ]
    error = QualityRejected("the face is not fit to enrol", reasons)
    assert problem_type(error).members(error) == {
        "reasons": [
            {"criterion": "size", "value": 41.5, "threshold": 64.0, "message": reasons[0].message},
            {"criterion": "yaw", "value": -48.2, "threshold": 35.0, "message": "turned"},
        ]
    }
    assert problem_type(FaceCountError("none")).members(FaceCountError("none")) == {}


def test_a_duplicate_identity_carries_the_person_it_matches() -> None:
    error = DuplicateIdentity("the face matches 'Ada' (person 3) at similarity 0.910", ADA, 0.91)
    assert isinstance(error, Conflict)
    assert problem_type(error).members(error) == {"person": ADA, "similarity": 0.91}
