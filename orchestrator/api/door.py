"""The door: a request's key, and an image request's admission, settled before its body is read.

FastAPI reads and parses a request's whole body before it runs any dependency, so with
the key checked in a dependency and admission taken in the route, an unauthenticated
client, or one past the limit, still had the server take in its upload (up to the body
limit) first. This pure ASGI middleware finds the route itself, checks the key its router
declares with the same dependency functions (so the same 401 and 403), and for a route
that analyses images takes one image from :class:`~orchestrator.api.admission.Admission`.
A refusal is answered at once, without one body byte read; the server discards the rest
of a small upload as it arrives, and closes the connection on a large one.

The routers keep their key dependencies: they declare the security in OpenAPI and hand a
route its key, which the door leaves in the scope so that it is not checked twice.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from fastapi.routing import RouteContext, iter_route_contexts
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.api.admission import Admission
from orchestrator.api.deps import CHECKED_KEY, admin_key, authenticate, current_key
from orchestrator.api.problems import refusal_before_body
from orchestrator.core.errors import FacerecError
from orchestrator.core.resources import Resources

Endpoint = Callable[..., Any]


@dataclass(frozen=True)
class Guard:
    """What the door checks for one route."""

    key: Endpoint | None
    """The key dependency its router declares (``current_key`` or ``admin_key``), if any."""
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
    key = admin_key if admin_key in declared else current_key if current_key in declared else None
    return Guard(key, route.endpoint in image_endpoints, route.endpoint in form_endpoints)


class Door:
    """Pure ASGI middleware: key and admission before the body (see the module's doc)."""

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
            if guard.key is not None:
                await self._check_key(scope, guard.key, headers)
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

    async def _check_key(self, scope: Scope, needed: Endpoint, headers: Headers) -> None:
        resources: Resources = scope["app"].state.resources
        key = await authenticate(resources, headers.get("x-api-key"))
        if needed is admin_key:
            await admin_key(key)
        scope[CHECKED_KEY] = key  # the route's own key dependency takes it from here
