"""The shared bearer token: every route but /health and /metrics needs it.

The orchestrator sends ``Authorization: Bearer <FACEREC_SEARCH_TOKEN>``. Reads need it as
well as writes: a search answers which face ids lie near a vector and a listing shows the
collections, and one rule for everything but the probes is easier to check than a list of
routes. Without a token configured (allowed on loopback only, see settings) every call
passes.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from search_service.errors import Unauthorized

_bearer = HTTPBearer(auto_error=False, description="FACEREC_SEARCH_TOKEN")


class TokenCheck:
    """A router dependency comparing the caller's bearer token with ``token``."""

    def __init__(self, token: SecretStr | None) -> None:
        self._expected = token.get_secret_value().encode() if token else None

    async def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
    ) -> None:
        if self._expected is None:
            return
        given = credentials.credentials.encode() if credentials else b""
        # Constant time: how far a guess matched must not show in the answer's timing.
        if not hmac.compare_digest(given, self._expected):
            raise Unauthorized(
                "missing or wrong bearer token: send `Authorization: Bearer` with the "
                "service's FACEREC_SEARCH_TOKEN"
            )
