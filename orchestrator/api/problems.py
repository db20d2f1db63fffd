"""Every error as RFC 9457 problem+json with the request id; never a traceback.

One handler serves the whole ``ProblemError`` family; FastAPI's validation errors and
Starlette's 404/405 are translated to the same shape; anything else is logged with its
stack and answered with a generic 500.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.errors import PROBLEM_BASE, ProblemError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestTooLarge(ProblemError):
    status = 413
    title = "Request too large"
    slug = "request-too-large"


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every log record, for a format that shows it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


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


class RequestContext:
    """Pure ASGI middleware: request id in and out, and the body size limit.

    The limit is checked against Content-Length before anything is read and counted while
    a chunked body streams in, so an oversized upload is refused without buffering it.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())],
                }
            await send(message)

        def refusal(detail: str) -> JSONResponse:
            return problem_response(413, RequestTooLarge.title, detail, RequestTooLarge.slug)

        try:
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                detail = f"the body is {declared} bytes; the limit is {self.max_body_bytes}"
                await refusal(detail)(scope, receive, send_with_id)
                return
            received = 0
            too_large = False
            replaced = False
            streamed_detail = f"the body exceeds the limit of {self.max_body_bytes} bytes"

            async def limited_receive() -> Message:
                nonlocal received, too_large
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body_bytes:
                        too_large = True
                        raise RequestTooLarge(streamed_detail)
                return message

            async def app_send(message: Message) -> None:
                nonlocal replaced
                if too_large:
                    # The framework turned our abort into its own error answer: answer 413 instead.
                    if not replaced:
                        replaced = True
                        await refusal(streamed_detail)(scope, receive, send_with_id)
                    return
                await send_with_id(message)

            try:
                await self.app(scope, limited_receive, app_send)
            except RequestTooLarge:
                if not replaced:
                    await refusal(streamed_detail)(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
