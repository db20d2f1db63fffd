"""Domain errors: what went wrong, said for the caller, with no notion of HTTP.

Every layer raises these; the API maps each class to its status, problem type and
headers in one place (:mod:`orchestrator.api.problems`), the command line prints them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class FacerecError(Exception):
    """A failure the caller can understand; ``detail`` says what happened, fit to show them."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(FacerecError):
    """The person, face, key or rollout named does not exist."""


class Conflict(FacerecError):
    """The request contradicts the current state (a duplicate, a rollout already running)."""


class DuplicateIdentity(Conflict):
    """The face matches an enrolled face of another person: perhaps one person under a second name.

    ``person`` is that person as the API shows one (id, name and fields); ``similarity`` the match.
    """

    def __init__(self, detail: str, person: Mapping[str, Any], similarity: float) -> None:
        super().__init__(detail)
        self.person = dict(person)
        self.similarity = similarity


class InvalidRequest(FacerecError):
    """The request is well-formed but its values are not acceptable."""


class Unauthorized(FacerecError):
    """No credentials, or credentials that are not known."""

    def __init__(self, detail: str = "a valid X-API-Key header or session cookie is required") -> None:
        super().__init__(detail)


class TooManyAttempts(FacerecError):
    """Too many failed sign-ins lately, for this username or from this address."""

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class Forbidden(FacerecError):
    """Known credentials whose role does not allow this."""


class ImageError(FacerecError):
    """The image cannot be decoded."""


class UnsupportedImage(ImageError):
    """The bytes are not an image of a supported type."""


class ImageTooLarge(ImageError):
    """The image is larger than the limits allow."""


class FaceCountError(FacerecError):
    """No face, or several, where exactly one is needed."""


@dataclass(frozen=True)
class QualityReason:
    """One enrolment criterion a face failed: what was measured, and the bound it missed."""

    criterion: str
    value: float
    threshold: float
    message: str


class QualityRejected(FacerecError):
    """The face is too small, blurred, turned or uncertain to enrol; ``reasons`` says which, measured."""

    def __init__(self, detail: str, reasons: Sequence[QualityReason]) -> None:
        super().__init__(detail)
        self.reasons = tuple(reasons)


class UpstreamUnavailable(FacerecError):
    """A dependency (Triton, the search service) or this service's capacity is not available now."""

    def __init__(self, detail: str, *, retry_after_s: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
