"""The error statuses a route declares in the OpenAPI spec, each a ``Problem`` as problem+json.

Routes and routers build their ``responses=`` from status codes: ``problems(404, 422)``.
A router declares what its auth dependency can answer (401, and 403 for admin routers),
a route what its own work can. The descriptions say when each status happens; a route may
say it more precisely for its own case (``why={422: ...}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from orchestrator.api.deps import UNSAFE_METHODS
from orchestrator.api.problems import PROBLEM_JSON
from orchestrator.api.schemas import Problem

REF_PREFIX = "#/components/schemas/"

WHY: dict[int, str] = {
    400: "the body cannot be parsed (not UTF-8, broken multipart), or an uploaded image is corrupt, "
    "truncated or too small to hold a face",
    401: "no X-API-Key header or session cookie, or one that is unknown, revoked or expired",
    403: "the caller's role does not allow this (it needs an admin key or user), or a request "
    "signed in by session cookie lacks its X-CSRF-Token",
    404: "no such id",
    409: "the request contradicts the current state",
    413: "the request body, or the image's pixel count, is over its limit",
    415: "the upload is not a JPEG, PNG, WebP or BMP image",
    422: "the request does not validate (`errors` lists each field at fault)",
    429: "too many failed sign-ins lately for this username or from this address; retry after "
    "Retry-After seconds",
    503: "too many images in flight, or Triton or the search service cannot answer now; retry after "
    "Retry-After seconds",
}

JSON_BODY = (400, 413, 422)
"""A route that reads a JSON body: unparsable, too large, invalid."""
IMAGE_UPLOAD = (400, 413, 415, 422, 503)
"""A route that analyses an uploaded image: corrupt, too large, not an image, no face, busy."""

_REQUEST_ID_HEADER = {
    "X-Request-ID": {
        "description": "the request's id, as in the body's request_id",
        "required": True,
        "schema": {"type": "string"},
    }
}

_RETRY_AFTER = {
    "description": "seconds to wait before trying again",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}

HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "the header that carries a key",
            "required": True,
            "schema": {"type": "string", "const": "X-API-Key"},
        }
    },
    503: {"Retry-After": _RETRY_AFTER},
    429: {"Retry-After": _RETRY_AFTER},
}


def problems(*statuses: int, why: Mapping[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for these error statuses: a ``Problem`` as problem+json, with its headers."""
    said = {**WHY, **(why or {})}
    return {
        status: {
            "description": said[status],
            "headers": {**_REQUEST_ID_HEADER, **HEADERS.get(status, {})},
            "content": {PROBLEM_JSON: {"schema": {"$ref": REF_PREFIX + Problem.__name__}}},
        }
        for status in statuses
    }


def _csrf_refusals(spec: dict[str, Any]) -> None:
    """A 403 on every signed-in route of an unsafe method: a session without its CSRF token
    is refused there, whatever role the route needs (admin routes declare 403 already)."""
    for methods in spec.get("paths", {}).values():
        for method, operation in methods.items():
            if method.upper() in UNSAFE_METHODS and operation.get("security"):
                operation["responses"].setdefault("403", problems(403)[403])


def install(app: FastAPI, request_models: Sequence[type[BaseModel]] = ()) -> None:
    """Put ``Problem`` in the spec's components, where every declared error refers.

    FastAPI would only put a response ``model`` under the route's own media type
    (application/json), so the schema is added here and the responses name it by ``$ref``.
    ``request_models`` go there too: the bodies a route reads itself and declares in its
    ``openapi_extra`` (``POST /v1/people``: JSON or a form).
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        built = app.openapi_schema is not None
        spec = generate()  # FastAPI's: builds the spec once, then answers the one it keeps
        if not built:
            _, definitions = models_json_schema(
                [(Problem, "serialization"), *((model, "validation") for model in request_models)],
                ref_template=REF_PREFIX + "{model}",
            )
            spec.setdefault("components", {}).setdefault("schemas", {}).update(definitions["$defs"])
            _csrf_refusals(spec)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
