"""Signing in and out with a user account: a session cookie and its CSRF token.

The session token travels in an HttpOnly cookie; the CSRF token in a readable one and in
the login's answer, for the page's script to send back as X-CSRF-Token (see
:mod:`orchestrator.api.deps`). Both are SameSite=Lax, and Secure as ``FACEREC_AUTH__COOKIE_SECURE``
says.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from fastapi import APIRouter, Depends, Request, Response, status

from orchestrator.accounts.login import change_own_password, sign_in
from orchestrator.accounts.users import register as register_user
from orchestrator.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    CurrentPrincipal,
    ResourcesDep,
    current_principal,
)
from orchestrator.api.responses import JSON_BODY, problems
from orchestrator.api.schemas import Login, Me, PasswordChange, Registration, SignedIn
from orchestrator.core.errors import Forbidden
from orchestrator.core.settings import AuthSettings
from orchestrator.db.account_tables import UserPublic

router = APIRouter(prefix="/v1/auth", tags=["auth"])
signed_in_router = APIRouter(
    prefix="/v1/auth", tags=["auth"], dependencies=[Depends(current_principal)], responses=problems(401)
)


def _address(request: Request) -> str:
    """The client's address, which the throttle counts by (behind a proxy: as uvicorn's proxy
    headers set it)."""
    return request.client.host if request.client else "unknown"


def _secure(request: Request, settings: AuthSettings) -> bool:
    if settings.cookie_secure == "auto":
        return request.url.scheme == "https"  # behind a proxy: as uvicorn's proxy headers set it
    return settings.cookie_secure == "always"


@router.post(
    "/login",
    response_model=SignedIn,
    responses=problems(
        401,
        429,
        *JSON_BODY,
        why={401: "wrong username or password (the same answer for a username that does not exist)"},
    ),
)
async def login(body: Login, request: Request, response: Response, resources: ResourcesDep) -> Any:
    """Sign in: the session cookie, and the CSRF token in a cookie and in the answer."""
    settings = resources.settings.auth
    user, session = await asyncio.to_thread(
        sign_in, resources.gallery, settings, body.username, body.password, _address(request)
    )
    secure = _secure(request, settings)
    max_age = math.ceil(settings.session_ttl_s)
    response.set_cookie(
        SESSION_COOKIE, session.token, max_age=max_age, httponly=True, samesite="lax", secure=secure
    )
    response.set_cookie(CSRF_COOKIE, session.csrf_token, max_age=max_age, samesite="lax", secure=secure)
    return SignedIn(
        username=user.username, role=user.role, csrf_token=session.csrf_token, expires_at=session.expires_at
    )


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses=problems(
        403,
        409,
        429,
        *JSON_BODY,
        why={
            403: "registration is closed (FACEREC_AUTH__OPEN_REGISTRATION)",
            409: "the username is taken",
            429: "too many registrations from this address lately",
        },
    ),
)
async def register(body: Registration, request: Request, resources: ResourcesDep) -> Any:
    """Create a ``recognize`` user, when registration is open; then log in. Each client
    address may register ``FACEREC_AUTH__LOGIN_MAX_FAILURES_PER_ADDRESS`` users per
    ``FACEREC_AUTH__LOGIN_WINDOW_S``."""
    settings = resources.settings.auth
    if not settings.open_registration:
        raise Forbidden("registration is closed; an admin creates users (POST /v1/users)")
    return await asyncio.to_thread(
        register_user, resources.gallery, settings, body.username, body.password, _address(request)
    )


@signed_in_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(principal: CurrentPrincipal, request: Request, resources: ResourcesDep) -> Response:
    """End the session (an API key has none: nothing changes) and clear its cookies."""
    if principal.session_id is not None:
        await asyncio.to_thread(resources.gallery.end_session, principal.session_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    secure = _secure(request, resources.settings.auth)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax", secure=secure)
    response.delete_cookie(CSRF_COOKIE, samesite="lax", secure=secure)
    return response


@signed_in_router.get("/me", response_model=Me)
async def me(principal: CurrentPrincipal) -> Any:
    return Me(kind=principal.kind, id=principal.id, role=principal.role, name=principal.name)


@signed_in_router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(
        403,
        429,
        *JSON_BODY,
        why={
            403: "the current password is wrong, or an API key asked (a key has no password)",
            429: "too many failed password checks lately (counted with failed logins)",
        },
    ),
)
async def change_password(
    body: PasswordChange, principal: CurrentPrincipal, request: Request, resources: ResourcesDep
) -> Response:
    """Change the signed-in user's own password. The current one is checked like a login
    (a wrong one counts as a failed login); the user's other sessions end, this one stays."""
    await asyncio.to_thread(
        change_own_password,
        resources.gallery,
        resources.settings.auth,
        principal,
        body.current_password,
        body.new_password,
        _address(request),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
