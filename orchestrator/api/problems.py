"""Every error as RFC 9457 problem+json with the request id; never a traceback.

This is the one place where a domain error becomes HTTP: :data:`PROBLEM_TYPES` gives each
error class its status, title and problem type, looked up along the class hierarchy as
Starlette chooses exception handlers, so one handler serves the whole ``FacerecError``
family and a subclass without an entry answers as its nearest mapped ancestor. FastAPI's
validation errors and Starlette's 404/405 are translated to the same shape; anything else
is logged with its stack and answered with a generic 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.api.schemas import InvalidField, Problem
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
    QualityRejected,
    TooManyAttempts,
    Unauthorized,
    UnsupportedImage,
    UpstreamUnavailable,
)
from orchestrator.core.logging import request_id_var

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://facerec.dev/problems/"
PROBLEM_JSON = "application/problem+json"


class RequestTooLarge(FacerecError):
    """The request body is over the size limit (raised by the body-limit middleware)."""


def _no_headers(error: Any) -> dict[str, str]:
    return {}


def _no_members(error: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ProblemType:
    status: int
    title: str
    slug: str
    headers: Callable[[Any], dict[str, str]] = field(default=_no_headers, compare=False)
    """The response headers this kind of error calls for, from the error itself."""
    members: Callable[[Any], dict[str, Any]] = field(default=_no_members, compare=False)
    """Members of the problem beyond RFC 9457's, from the error (each declared on ``Problem``)."""

    @property
    def uri(self) -> str:
        return PROBLEM_BASE + self.slug


def _retry_after(error: UpstreamUnavailable | TooManyAttempts) -> dict[str, str]:
    return {"Retry-After": str(error.retry_after_s)}


def _authenticate(error: Unauthorized) -> dict[str, str]:
    return {"WWW-Authenticate": "X-API-Key"}


def _reasons(error: QualityRejected) -> dict[str, Any]:
    return {"reasons": [asdict(reason) for reason in error.reasons]}


def _match(error: DuplicateIdentity) -> dict[str, Any]:
    return {"person": error.person, "similarity": error.similarity}


PROBLEM_TYPES: dict[type[FacerecError], ProblemType] = {
    FacerecError: ProblemType(500, "Internal error", "internal"),
    NotFound: ProblemType(404, "Not found", "not-found"),
    Conflict: ProblemType(409, "Conflict", "conflict"),
    DuplicateIdentity: ProblemType(409, "Duplicate identity", "duplicate-identity", members=_match),
    InvalidRequest: ProblemType(422, "Invalid request", "invalid-request"),
    Unauthorized: ProblemType(401, "Unauthorized", "unauthorized", _authenticate),
    Forbidden: ProblemType(403, "Forbidden", "forbidden"),
    ImageError: ProblemType(400, "Corrupt image", "corrupt-image"),
    UnsupportedImage: ProblemType(415, "Unsupported image type", "unsupported-image"),
    ImageTooLarge: ProblemType(413, "Image too large", "image-too-large"),
    RequestTooLarge: ProblemType(413, "Request too large", "request-too-large"),
    FaceCountError: ProblemType(422, "Unexpected number of faces", "face-count"),
    QualityRejected: ProblemType(422, "Face quality too low", "face-quality", members=_reasons),
    UpstreamUnavailable: ProblemType(503, "Service unavailable", "upstream-unavailable", _retry_after),
    TooManyAttempts: ProblemType(429, "Too many attempts", "too-many-attempts", _retry_after),
}


def problem_type(error: FacerecError) -> ProblemType:
    """The entry of the error's class or of its nearest ancestor that has one."""
    for cls in type(error).__mro__:
        if cls in PROBLEM_TYPES:
            return PROBLEM_TYPES[cls]
    raise TypeError(f"{type(error).__name__} is not a FacerecError")


def problem_of(error: FacerecError) -> dict[str, Any]:
    """The problem object of an error, without request context (also one image's batch result)."""
    kind = problem_type(error)
    return {"type": kind.uri, "title": kind.title, "status": kind.status, "detail": error.detail}


def problem_response(
    status: int,
    title: str,
    detail: str,
    slug: str,
    headers: dict[str, str] | None = None,
    errors: list[InvalidField] | None = None,
    members: dict[str, Any] | None = None,
) -> JSONResponse:
    """The answer, built as the :class:`Problem` that the OpenAPI spec declares for every error."""
    problem = Problem(
        type=PROBLEM_BASE + slug,
        title=title,
        status=status,
        detail=detail,
        request_id=request_id_var.get(),
        errors=errors,
        **(members or {}),
    )
    # The members left out are the absent ones: a null inside one (a person's age) is said.
    body = {name: value for name, value in problem.model_dump().items() if value is not None}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def error_response(error: FacerecError) -> JSONResponse:
    kind = problem_type(error)
    return problem_response(
        kind.status, kind.title, error.detail, kind.slug, kind.headers(error), members=kind.members(error)
    )


DRAIN_BYTES = 1 << 20
"""A request refused before its body is read keeps its connection if the body is at most
this large: the server reads and drops the rest to find the next request. A larger body (or
one of unknown length) closes the connection instead: reading the rest of every refused
upload let a flood of 20 MB bodies without a key take the CPU that keyed requests needed
(their p50 went from 0.5 to 7.9 s). A client that reads the answer after its upload fails
(curl, urllib3, httpx's sync client; or one that sends ``Expect: 100-continue``) still gets
it; httpx's async client on asyncio drops it with the connection."""


def refusal_before_body(error: FacerecError, headers: Headers) -> JSONResponse:
    """``error``'s answer to a request whose body has not been read, closing the connection
    when the body is large (:data:`DRAIN_BYTES`)."""
    response = error_response(error)
    length = headers.get("content-length")
    unknown = "transfer-encoding" in headers or (length is not None and not length.isdigit())
    if unknown or (length is not None and int(length) > DRAIN_BYTES):
        response.headers["connection"] = "close"
    return response


async def _facerec(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FacerecError)
    return error_response(exc)


def allowed_methods(request: Request) -> str:
    """Every method of every route on the request's path, as RFC 9110 wants ``Allow`` to say.

    Starlette's 405 names only the first route that has the path, and a path here often has
    several: a read route for any key beside write routes for admins. A literal path beside a
    template that also matches it (``/v1/people/duplicates`` beside ``/v1/people/{person_id}``)
    is a resource of its own: only the routes with the fewest path parameters count, and not
    the hidden ones that answer 405 for it.
    """
    path = request.scope["path"]
    found: list[tuple[int, set[str]]] = []
    for context in iter_route_contexts(request.app.routes):
        pattern = getattr(context, "path_regex", None)
        shown = getattr(context, "include_in_schema", True)
        if context.methods and shown and pattern is not None and pattern.match(path):
            found.append((len(getattr(context, "param_convertors", {})), set(context.methods)))
    fewest = min((parameters for parameters, _ in found), default=0)
    return ", ".join(sorted({m for parameters, methods in found if parameters == fewest for m in methods}))


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    title = titles.get(exc.status_code, "HTTP error")
    slug = title.lower().replace(" ", "-")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
    return problem_response(exc.status_code, title, str(exc.detail), slug, headers)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        InvalidField(loc=list(e.get("loc", ())), msg=e.get("msg", ""), type=e.get("type", ""))
        for e in exc.errors()
    ]
    where = ", ".join(".".join(str(p) for p in e.loc) + ": " + e.msg for e in errors[:5])
    return problem_response(422, "Invalid request", where, "invalid-request", errors=errors)


def internal_error_response() -> JSONResponse:
    """The generic 500: the cause goes to the log, never to the client."""
    return problem_response(500, "Internal error", "an unexpected error occurred", "internal")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Only for errors outside RequestContext, which answers the others with their request id.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return internal_error_response()


def install(app: FastAPI) -> None:
    app.add_exception_handler(FacerecError, _facerec)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)
