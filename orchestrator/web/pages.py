"""The web app's pages: each a template, shown to a signed-in user, admin pages to admins only.

A page carries no data of its own; its script asks the API (see the package's doc). The page
routes check the session themselves: a browser without one is sent to ``/login``, and a
``recognize`` user asking for an admin page gets a 403 page that says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from orchestrator.accounts.principal import Principal
from orchestrator.api.deps import identify
from orchestrator.api.params import RowId
from orchestrator.core.errors import FacerecError, NotFound

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

CONTENT_SECURITY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""No inline script or style and nothing from another origin: an injected tag does nothing."""

NAVIGATION = (
    ("recognise", "Recognise", "/recognise", False),
    ("people", "People", "/people", False),
    ("jobs", "Jobs", "/jobs", False),
    ("models", "Models", "/models", True),
    ("dashboard", "Dashboard", "/dashboard", True),
    ("users", "Users", "/users", True),
    ("account", "Account", "/account", False),
)
"""(page, label, path, admin only) in the order of the menu."""


async def signed_in(request: Request) -> Principal | None:
    """The user of the request's session, or None; an API key does not open pages."""
    cookies = request.cookies
    try:
        principal = await identify(request.app.state.resources, "GET", {}, cookies)
    except FacerecError:
        return None
    return principal


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _render(request: Request, page: str, principal: Principal, status: int = 200, **context: Any) -> Response:
    admin = principal.role == "admin"
    menu = [(name, label, path) for name, label, path, only_admin in NAVIGATION if admin or not only_admin]
    response = templates.TemplateResponse(
        request,
        f"{page}.html",
        {"page": page, "principal": principal, "menu": menu, **context},
        status_code=status,
    )
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY
    response.headers["Cache-Control"] = "no-store"
    return response


async def _page(request: Request, page: str, *, admin: bool = False, **context: Any) -> Response:
    principal = await signed_in(request)
    if principal is None:
        return _login_redirect(request)
    if admin and principal.role != "admin":
        return _render(request, "forbidden", principal, status=403, wanted=page)
    return _render(request, page, principal, **context)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    return await _page(request, "recognise")


@router.get("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    if await signed_in(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return _signed_out_page(request, "login")


def _signed_out_page(request: Request, page: str) -> Response:
    open_registration = request.app.state.resources.settings.auth.open_registration
    response = templates.TemplateResponse(
        request, f"{page}.html", {"page": page, "open_registration": open_registration}
    )
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY
    return response


@router.get("/register", response_class=HTMLResponse)
async def register(request: Request) -> Response:
    """Creating one's own account: a page only while FACEREC_AUTH__OPEN_REGISTRATION is on."""
    if not request.app.state.resources.settings.auth.open_registration:
        raise NotFound("registration is closed; an admin creates users")
    if await signed_in(request) is not None:
        return RedirectResponse("/", status_code=303)
    return _signed_out_page(request, "register")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another origin."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/recognise", response_class=HTMLResponse)
async def recognise(request: Request) -> Response:
    return await _page(request, "recognise")


@router.get("/people", response_class=HTMLResponse)
async def people(request: Request) -> Response:
    return await _page(request, "people")


@router.get("/people/{person_id}", response_class=HTMLResponse)
async def person(request: Request, person_id: RowId) -> Response:
    return await _page(request, "person", person_id=person_id)


@router.get("/jobs", response_class=HTMLResponse)
async def jobs(request: Request) -> Response:
    return await _page(request, "jobs")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job(request: Request, job_id: RowId) -> Response:
    return await _page(request, "job", job_id=job_id)


@router.get("/models", response_class=HTMLResponse)
async def models(request: Request) -> Response:
    return await _page(request, "models", admin=True)


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request) -> Response:
    return await _page(request, "dashboard", admin=True)


@router.get("/users", response_class=HTMLResponse)
async def users(request: Request) -> Response:
    return await _page(request, "users", admin=True)


@router.get("/account", response_class=HTMLResponse)
async def account(request: Request) -> Response:
    return await _page(request, "account")
