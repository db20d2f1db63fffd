"""Every error as RFC 9457 problem+json with the request id; never a traceback.

One handler serves the whole ``ProblemError`` family; FastAPI's validation errors and
Starlette's 404/405 are translated to the same shape; anything else is logged with its
stack and answered with a generic 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.core.errors import PROBLEM_BASE, ProblemError
from orchestrator.core.logging import request_id_var

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class RequestTooLarge(ProblemError):
    status = 413
    title = "Request too large"
    slug = "request-too-large"


def problem_response(
    status: int, title: str, detail: str, slug: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": request_id_var.get(),
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def _problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.title, exc.detail, exc.slug, exc.headers)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    title = titles.get(exc.status_code, "HTTP error")
    slug = title.lower().replace(" ", "-")
    return problem_response(exc.status_code, title, str(exc.detail), slug, dict(exc.headers or {}))


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    where = ", ".join(".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in errors[:5])
    return problem_response(422, "Invalid request", where, "invalid-request", errors=errors)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "Internal error", "an unexpected error occurred", "internal")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)
