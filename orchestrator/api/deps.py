"""Request dependencies: ``Annotated`` aliases for resources, admission, metrics, the caller.

The caller is a :class:`Principal`: an API key (``X-API-Key``) or a user signed in by
session cookie. Roles are declared on the routers: ``dependencies=[Depends(current_principal)]``
for anyone signed in, ``[Depends(admin_principal)]`` for admin. A route that needs the
principal itself also takes ``CurrentPrincipal``; FastAPI resolves it once per request.
FastAPI reads a request's body before it runs any dependency, so the door
(:mod:`orchestrator.api.door`) runs the same two checks, read from the same declarations,
before the body.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader

from orchestrator.accounts.principal import Principal
from orchestrator.api.admission import Admission
from orchestrator.api.metrics import ApiMetrics
from orchestrator.core.errors import Forbidden, Unauthorized
from orchestrator.core.resources import Resources
from orchestrator.db.accounts import token_hash
from orchestrator.db.tables import ApiKeyPublic

SESSION_COOKIE = "facerec_session"
"""The session's token: HttpOnly, so no script on the page can read it."""
CSRF_COOKIE = "facerec_csrf"
"""The session's CSRF token, readable by the page's own script, which sends it back as
:data:`CSRF_HEADER`: a page of another site can make the browser send the cookies, not
read one and set a header."""
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")
_session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="A session from POST /v1/auth/login; POST, PUT, PATCH and DELETE also need the "
    "X-CSRF-Token header it returned",
)


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


CHECKED_PRINCIPAL = "facerec.principal"
"""Where the door leaves, in the ASGI scope, the principal it has checked for this request."""


async def authenticate(resources: Resources, key: str | None) -> ApiKeyPublic:
    """The record of the key sent, or 401."""
    if not key:
        raise Unauthorized()
    found = await resources.live.authenticate(key)
    if found is None:
        raise Unauthorized("the API key is unknown or revoked")
    return found


async def identify(
    resources: Resources, method: str, headers: Mapping[str, str], cookies: Mapping[str, str]
) -> Principal:
    """Who sent the request: its X-API-Key, else its session cookie (with the CSRF token
    that an unsafe method needs), or 401.

    Sessions are read from the database on each request, not cached like keys: browsers
    send few requests, and a logout or a deleted user must end them on every replica at once.
    """
    key = headers.get("x-api-key")
    if key is not None:  # the key wins: a machine's request carries no CSRF token
        found = await authenticate(resources, key)
        return Principal("key", found.id, found.role, found.name, f"key {found.prefix}…")
    token = cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthorized()
    live = await asyncio.to_thread(resources.gallery.live_session, token)
    if live is None:
        raise Unauthorized("the session is unknown or has expired; log in again")
    if method in UNSAFE_METHODS:
        sent = headers.get(CSRF_HEADER.lower())
        if not sent or not hmac.compare_digest(token_hash(sent), live.csrf_hash):
            raise Forbidden(f"a request signed in by session needs the {CSRF_HEADER} header of its login")
    user = live.user
    return Principal("user", user.id, user.role, user.username, f"user {user.username}", live.session_id)


async def current_principal(
    request: Request,
    resources: ResourcesDep,
    key: Annotated[str | None, Security(_api_key_header)],
    session: Annotated[str | None, Security(_session_cookie)],
) -> Principal:
    checked: Principal | None = request.scope.get(CHECKED_PRINCIPAL)
    if checked is not None:
        return checked
    return await identify(resources, request.method, request.headers, request.cookies)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: CurrentPrincipal) -> Principal:
    if principal.role != "admin":
        raise Forbidden(f"this needs the admin role; {principal.described} has role {principal.role!r}")
    return principal
