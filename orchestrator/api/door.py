"""The door: who is asking, and an image request's admission, settled before its body is read.

FastAPI reads and parses a request's whole body before it runs any dependency, so with
the key checked in a dependency and admission taken in the route, an unauthenticated
client, or one past the limit, still had the server take in its upload (up to the body
limit) first. This pure ASGI middleware finds the route itself, checks the key or session
its router declares with the same dependency functions (so the same 401 and 403, the CSRF
check included), and for a route that analyses images takes one image from
:class:`~orchestrator.api.admission.Admission`.
A refusal is answered at once, without one body byte read; the server discards the rest
of a small upload as it arrives, and closes the connection on a large one.

The routers keep their principal dependencies: they declare the security in OpenAPI and
hand a route its principal, which the door leaves in the scope so that it is not checked twice.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from fastapi.routing import RouteContext, iter_route_contexts
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.api.admission import Admission
from orchestrator.api.deps import CHECKED_PRINCIPAL, admin_principal, current_principal, identify
from orchestrator.api.problems import refusal_before_body
from orchestrator.core.errors import FacerecError
from orchestrator.core.resources import Resources

Endpoint = Callable[..., Any]


@dataclass(frozen=True)
class Guard:
    """What the door checks for one route."""

    principal: Endpoint | None
    """The dependency its router declares (``current_principal`` or ``admin_principal``), if any."""
    images: bool
    """Whether it analyses images, so its requests are admitted."""
    images_in_forms: bool = False
    """Whether it analyses images when its body is a multipart form (``POST /v1/people``)."""

    def admits(self, headers: Headers) -> bool:
        """Whether this request is one that analyses images."""
        return self.images or (self.images_in_forms and is_form(headers.get("content-type")))


def is_form(content_type: str | None) -> bool:
    """Whether a body of this content type is a multipart form.

    The one test for the door and for a route that reads either a form or JSON, so the
    images the door takes and the ones the route takes on top stay in step.
    """
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_type() == "multipart/form-data"


def guard_of(
    route: RouteContext, image_endpoints: Collection[Endpoint], form_endpoints: Collection[Endpoint] = ()
) -> Guard:
    declared = {depends.dependency for depends in getattr(route, "dependencies", ())}
    needed = next((check for check in (admin_principal, current_principal) if check in declared), None)
    return Guard(needed, route.endpoint in image_endpoints, route.endpoint in form_endpoints)


class Door:
    """Pure ASGI middleware: principal and admission before the body (see the module's doc)."""

    def __init__(
        self,
        app: ASGIApp,
        admission: Admission,
        image_endpoints: Collection[Endpoint],
        form_image_endpoints: Collection[Endpoint] = (),
    ) -> None:
        self.app = app
        self.admission = admission
        self.image_endpoints = frozenset(image_endpoints)
        self.form_image_endpoints = frozenset(form_image_endpoints)
        """Routes that analyse images only when their body is a multipart form."""
        self._routes: list[tuple[RouteContext, Guard]] | None = None

    def matched(self, scope: Scope) -> tuple[RouteContext, Guard] | None:
        """The route the router will run for this request, found in the router's order."""
        if self._routes is None:  # every route is included before the first request
            self._routes = [
                (route, guard_of(route, self.image_endpoints, self.form_image_endpoints))
                for route in iter_route_contexts(scope["app"].routes)
            ]
        for route, guard in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route, guard
        return None  # a 404, 405 or redirect: the router answers without reading a body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.matched(scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        route, guard = found
        headers = Headers(scope=scope)
        images = guard.admits(headers)
        try:
            if guard.principal is not None:
                await self._check_principal(scope, guard.principal, headers)
            if images:
                self.admission.take()
        except FacerecError as error:
            scope["route"] = route.original_route  # counted in the metrics under its route
            await refusal_before_body(error, headers)(scope, receive, send)
            return
        if not images:
            await self.app(scope, receive, send)
            return
        try:
            async with self.admission.started():
                await self.app(scope, receive, send)
        finally:
            self.admission.release()

    async def _check_principal(self, scope: Scope, needed: Endpoint, headers: Headers) -> None:
        resources: Resources = scope["app"].state.resources
        cookies = cookie_parser(headers.get("cookie", ""))
        principal = await identify(resources, scope["method"], headers, cookies)
        if needed is admin_principal:
            await admin_principal(principal)
        scope[CHECKED_PRINCIPAL] = principal  # the route's own dependency takes it from here
