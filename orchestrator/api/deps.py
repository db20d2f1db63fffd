"""Request dependencies: ``Annotated`` aliases for resources, admission, metrics, the caller's key.

Roles are declared on the routers: ``dependencies=[Depends(current_key)]`` for any valid
key, ``[Depends(admin_key)]`` for admin. A route that needs the key itself also takes
``CurrentKey``; FastAPI resolves it once per request. FastAPI reads a request's body before
it runs any dependency, so the door (:mod:`orchestrator.api.door`) runs the same two checks,
read from the same declarations, before the body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from orchestrator.api.admission import Admission
from orchestrator.api.metrics import ApiMetrics
from orchestrator.core.errors import Forbidden, Unauthorized
from orchestrator.core.resources import Resources
from orchestrator.db.tables import ApiKeyPublic

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


async def get_resources(request: Request) -> Resources:
    # async: FastAPI runs a plain def dependency in its thread pool, a hop per request.
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_admission(request: Request) -> Admission:
    admission: Admission = request.app.state.admission
    return admission


AdmissionDep = Annotated[Admission, Depends(get_admission)]


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]


CHECKED_KEY = "facerec.checked_key"
"""Where the door leaves, in the ASGI scope, the key it has checked for this request."""


async def authenticate(resources: Resources, key: str | None) -> ApiKeyPublic:
    """The record of the key sent, or 401."""
    if not key:
        raise Unauthorized()
    found = await resources.live.authenticate(key)
    if found is None:
        raise Unauthorized("the API key is unknown or revoked")
    return found


async def current_key(
    request: Request, resources: ResourcesDep, key: Annotated[str | None, Security(_api_key_header)]
) -> ApiKeyPublic:
    checked: ApiKeyPublic | None = request.scope.get(CHECKED_KEY)
    return checked if checked is not None else await authenticate(resources, key)


CurrentKey = Annotated[ApiKeyPublic, Depends(current_key)]


async def admin_key(key: CurrentKey) -> ApiKeyPublic:
    if key.role != "admin":
        raise Forbidden(f"this needs an admin key; key {key.prefix}… has role {key.role!r}")
    return key
