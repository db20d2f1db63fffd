"""The one family of errors that reach a client, each rendered as RFC 9457 problem+json."""

from __future__ import annotations

from typing import ClassVar

PROBLEM_BASE = "https://facerec.dev/problems/"


class ProblemError(Exception):
    """An error with a stable problem type, an HTTP status and a message fit for the client."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    slug: ClassVar[str] = "internal"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def to_problem(self, instance: str | None = None) -> dict[str, object]:
        problem: dict[str, object] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            problem["instance"] = instance
        return problem


class NotFound(ProblemError):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(ProblemError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class InvalidRequest(ProblemError):
    status = 422
    title = "Invalid request"
    slug = "invalid-request"


class Unauthorized(ProblemError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"

    def __init__(self, detail: str = "a valid X-API-Key header is required") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "X-API-Key"})


class Forbidden(ProblemError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class ImageError(ProblemError):
    status = 400
    title = "Corrupt image"
    slug = "corrupt-image"


class UnsupportedImage(ImageError):
    status = 415
    title = "Unsupported image type"
    slug = "unsupported-image"


class ImageTooLarge(ImageError):
    status = 413
    title = "Image too large"
    slug = "image-too-large"


class FaceCountError(ProblemError):
    status = 422
    title = "Unexpected number of faces"
    slug = "face-count"


class UpstreamUnavailable(ProblemError):
    status = 503
    title = "Service unavailable"
    slug = "upstream-unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})
