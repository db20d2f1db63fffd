"""The service's error family; each maps to one RFC 9457 problem (no web imports)."""

from __future__ import annotations

from typing import ClassVar

PROBLEM_BASE = "urn:facerec:search:problem:"


class ProblemError(Exception):
    """An error answered as ``application/problem+json``; nothing was changed."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    default_slug: ClassVar[str] = "internal"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str, *, slug: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.slug = slug or self.default_slug

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


class BadRequest(ProblemError):
    status = 400
    title = "Bad request"
    default_slug = "bad-request"


class Unauthorized(ProblemError):
    status = 401
    title = "Unauthorized"
    default_slug = "unauthorized"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class InvalidInput(ProblemError):
    status = 422
    title = "Invalid input"
    default_slug = "invalid-input"


class NotFound(ProblemError):
    status = 404
    title = "Not found"
    default_slug = "not-found"


class Conflict(ProblemError):
    status = 409
    title = "Conflict"
    default_slug = "conflict"


class Unavailable(ProblemError):
    status = 503
    title = "Unavailable"
    default_slug = "unavailable"
