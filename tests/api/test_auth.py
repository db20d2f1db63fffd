"""Who may call what: every served route against the role table, and the keys themselves.

The routes are read from the app, so a route added later is tested here at once: it fails
until ``ROLES`` says which role it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.api.app import create_app
from orchestrator.api.deps import SESSION_COOKIE
from tests.api.conftest import PASSWORD, Api, assert_problem, make_settings, served_routes
from tests.api.fakes import png

pytestmark = pytest.mark.unit

PUBLIC = "no key"
ANY_KEY = "any key"
ADMIN = "admin"
USER = "a user's session"
"""A signed-in user of any role; a key is refused 403 (``POST /v1/auth/password``: a key has none)."""
PAGE = "a page for any user"
ADMIN_PAGE = "a page for admins"
SIGNED_OUT_PAGE = "a page for the signed out"
"""The web app's pages (orchestrator/web): a session opens them, a key does not."""

Route = tuple[str, str]

ROLES: dict[Route, str] = {
    # Probes, metrics and the API's own documentation: no key.
    ("GET", "/health"): PUBLIC,
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    # API.md: the recognize role may recognize, verify, detect and read people.
    ("POST", "/v1/recognize"): ANY_KEY,
    ("POST", "/v1/recognize/batch"): ANY_KEY,
    ("POST", "/v1/verify"): ANY_KEY,
    ("POST", "/v1/detect"): ANY_KEY,
    ("GET", "/v1/people"): ANY_KEY,
    ("GET", "/v1/people/{person_id}"): ANY_KEY,
    ("GET", "/v1/people/{person_id}/faces"): ANY_KEY,
    ("GET", "/v1/faces/{face_id}/image"): ANY_KEY,
    ("GET", "/health/detailed"): ANY_KEY,
    # Jobs: a recognize job is recognition; its enrol kind checks for admin in the route.
    ("POST", "/v1/jobs"): ANY_KEY,
    ("GET", "/v1/jobs"): ANY_KEY,
    ("GET", "/v1/jobs/dead-letters"): ANY_KEY,
    ("GET", "/v1/jobs/{job_id}"): ANY_KEY,
    ("GET", "/v1/jobs/{job_id}/items"): ANY_KEY,
    ("GET", "/v1/jobs/{job_id}/items/{index}/image"): ANY_KEY,
    ("GET", "/v1/jobs/workers"): ANY_KEY,
    ("POST", "/v1/jobs/{job_id}/cancel"): ANY_KEY,
    ("POST", "/v1/jobs/{job_id}/retry"): ANY_KEY,
    # Everything else changes the gallery, the keys or the model: admin only.
    ("POST", "/v1/people"): ADMIN,
    ("PATCH", "/v1/people/{person_id}"): ADMIN,
    ("DELETE", "/v1/people/{person_id}"): ADMIN,
    ("POST", "/v1/people/{person_id}/faces"): ADMIN,
    ("DELETE", "/v1/faces/{face_id}"): ADMIN,
    ("POST", "/v1/keys"): ADMIN,
    ("GET", "/v1/keys"): ADMIN,
    ("DELETE", "/v1/keys/{key_id}"): ADMIN,
    ("GET", "/v1/models"): ADMIN,
    ("GET", "/v1/models/rollouts"): ADMIN,
    ("POST", "/v1/models/rollouts"): ADMIN,
    ("GET", "/v1/models/rollouts/{rollout_id}"): ADMIN,
    ("POST", "/v1/models/rollouts/{rollout_id}/rollback"): ADMIN,
    ("GET", "/v1/log"): ADMIN,
    ("GET", "/v1/stats"): ADMIN,
    ("GET", "/v1/stats/live"): ADMIN,
    ("GET", "/v1/index"): ADMIN,
    ("POST", "/v1/index/rebuild"): ADMIN,
    ("DELETE", "/v1/people"): ADMIN,
    ("GET", "/v1/people/duplicates"): ADMIN,
    ("GET", "/v1/calibration"): ADMIN,
    ("POST", "/v1/calibration/recompute"): ADMIN,
    ("POST", "/v1/users"): ADMIN,
    ("GET", "/v1/users"): ADMIN,
    ("PATCH", "/v1/users/{user_id}"): ADMIN,
    ("DELETE", "/v1/users/{user_id}"): ADMIN,
    # Signing in is open to anyone (registration only when it is switched on).
    ("POST", "/v1/auth/login"): PUBLIC,
    ("POST", "/v1/auth/register"): PUBLIC,
    ("POST", "/v1/auth/logout"): ANY_KEY,
    ("GET", "/v1/auth/me"): ANY_KEY,
    ("POST", "/v1/auth/password"): USER,
    # The web app.
    ("GET", "/"): PAGE,
    ("GET", "/recognise"): PAGE,
    ("GET", "/people"): PAGE,
    ("GET", "/people/{person_id}"): PAGE,
    ("GET", "/jobs"): PAGE,
    ("GET", "/jobs/{job_id}"): PAGE,
    ("GET", "/account"): PAGE,
    ("GET", "/models"): ADMIN_PAGE,
    ("GET", "/dashboard"): ADMIN_PAGE,
    ("GET", "/users"): ADMIN_PAGE,
    ("GET", "/login"): SIGNED_OUT_PAGE,
    ("GET", "/register"): SIGNED_OUT_PAGE,
    # Not a person called "duplicates" (``PATCH /v1/people/{person_id}``): 405, after the key.
    ("PATCH", "/v1/people/duplicates"): ADMIN,
    ("DELETE", "/v1/people/duplicates"): ADMIN,
}
NOT_ALLOWED = {("PATCH", "/v1/people/duplicates"), ("DELETE", "/v1/people/duplicates")}
"""Served only to answer 405 with the path's own ``Allow``, to an admin too."""

IMAGE = ("face.png", png(), "image/png")

VALID_REQUESTS: dict[Route, dict[str, Any]] = {
    ("POST", "/v1/people"): {"json": {"name": "Grace Hopper"}},
    ("PATCH", "/v1/people/{person_id}"): {"json": {"name": "Ada King"}},
    ("POST", "/v1/people/{person_id}/faces"): {"files": {"file": IMAGE}},
    ("POST", "/v1/recognize"): {"files": {"file": IMAGE}},
    ("POST", "/v1/recognize/batch"): {"files": [("files", IMAGE), ("files", IMAGE)]},
    ("POST", "/v1/verify"): {"files": {"file1": IMAGE, "file2": IMAGE}},
    ("POST", "/v1/detect"): {"files": {"file": IMAGE}},
    ("POST", "/v1/keys"): {"json": {"name": "kiosk-2", "role": "recognize"}},
    ("POST", "/v1/models/rollouts"): {"json": {"version": "2"}},
    ("DELETE", "/v1/people"): {"params": {"confirm": "all"}},
    ("POST", "/v1/jobs"): {"data": {"kind": "recognize"}, "files": [("files", IMAGE)]},
    ("POST", "/v1/users"): {"json": {"username": "grace", "password": "cobol-1959", "role": "recognize"}},
    ("POST", "/v1/auth/login"): {"json": {"username": "ada", "password": PASSWORD}},
    ("POST", "/v1/auth/register"): {"json": {"username": "grace", "password": "cobol-1959"}},
    ("PATCH", "/v1/users/{user_id}"): {"json": {"role": "admin"}},
    ("POST", "/v1/auth/password"): {"json": {"current_password": PASSWORD, "new_password": "cobol-1959"}},
}
"""A body (or upload) valid for the route; a route missing here is called without one."""

UNKNOWN_KEY = "frk_" + "A" * 43  # shaped like a real key, never issued


def assert_allowed(answer: httpx.Response) -> None:
    assert 200 <= answer.status_code < 300, answer.text


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "route" in metafunc.fixturenames:
        routes = served_routes(create_app(make_settings(Path("unused"))))
        metafunc.parametrize("route", routes, ids=[f"{method} {path}" for method, path in routes])


def test_the_role_table_names_exactly_the_served_routes(api: Api) -> None:
    served = set(served_routes(api.app))
    assert ("POST", "/v1/recognize") in served, "the route enumeration found nothing behind the routers"
    assert served - ROLES.keys() == set(), "served but not in ROLES: add each with the role API.md gives it"
    assert ROLES.keys() - served == set(), "in ROLES but no longer served"


async def test_route_needs_its_role(api: Api, route: Route) -> None:
    method, template = route
    assert route in ROLES, f"{method} {template} is not in ROLES"
    role = ROLES[route]
    url = api.seeded.path(template)
    valid = VALID_REQUESTS.get(route, {})
    if role in (PAGE, ADMIN_PAGE, SIGNED_OUT_PAGE):
        await assert_page_access(api, url, role)
        return

    if role == PUBLIC:
        async with api.client() as anonymous:
            answer = await anonymous.request(method, url, **valid)
        if route == ("POST", "/v1/auth/register"):
            assert_problem(answer, 403, "registration is closed")  # the default; tests/api/test_accounts
            return
        assert answer.status_code == 200, answer.text
        return

    async with api.client() as anonymous:
        # Without a body too: the key is checked before the request is validated.
        assert_problem(await anonymous.request(method, url), 401)
        assert_problem(await anonymous.request(method, url, **valid), 401)
    async with api.client(UNKNOWN_KEY) as stranger:
        assert_problem(await stranger.request(method, url, **valid), 401)
        stranger.cookies.set(SESSION_COOKIE, "not-a-session")
        assert_problem(await stranger.request(method, url, **valid), 401)
    # A recognize user signed in by session is let in as far as a recognize key is.
    async with api.session(api.seeded.recognize_user) as ada:
        if method != "GET":
            forged = {"X-CSRF-Token": "forged"}  # in place of the client's own
            assert_problem(await ada.request(method, url, **valid, headers=forged), 403, "X-CSRF-Token")
            del ada.headers["X-CSRF-Token"]
            assert_problem(await ada.request(method, url, **valid), 403, "X-CSRF-Token")
        else:
            del ada.headers["X-CSRF-Token"]  # a read needs none
            answer = await ada.request(method, url, **valid)
            assert_allowed(answer) if role == ANY_KEY else assert_problem(answer, 403, "user ada")
    for credentials in (api.client(api.seeded.recognize_key), api.session(api.seeded.recognize_user)):
        async with credentials as recognizer:
            answer = await recognizer.request(method, url, **valid)
            if role == ADMIN:
                assert_problem(answer, 403)
                assert_problem(await recognizer.request(method, url), 403)
            elif role == USER and "X-API-Key" in recognizer.headers:
                assert_problem(answer, 403, "has no password")
            else:
                assert_allowed(answer)
    # Last, as it may change the gallery: the admin may call everything.
    async with api.client(api.seeded.admin_key) as admin:
        answer = await admin.request(method, url, **valid)
    if route in NOT_ALLOWED:
        assert_problem(answer, 405)
        assert answer.headers["allow"] == "GET"
        return
    if role == USER:
        assert_problem(answer, 403, "has no password")
        return
    assert_allowed(answer)


async def assert_page_access(api: Api, url: str, role: str) -> None:
    """A page: sign-in for no session (a key opens none), the 403 page for a recognize user on
    an admin page, the page itself otherwise; a signed-out page sends the signed in away."""
    async with api.client() as anonymous:
        answer = await anonymous.get(url)
        if role == SIGNED_OUT_PAGE:
            # /register is there only while registration is open (off by default: 404).
            assert answer.status_code == (404 if url == "/register" else 200), answer.text
        else:
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    async with api.client(api.seeded.admin_key) as admin_key:
        answer = await admin_key.get(url)
        if role == SIGNED_OUT_PAGE:
            assert answer.status_code == (404 if url == "/register" else 200), answer.text
        else:
            assert answer.status_code == 303, "a key opened a page"
    async with api.session(api.seeded.recognize_user) as recognizer:
        answer = await recognizer.get(url)
        if role == SIGNED_OUT_PAGE:
            assert answer.status_code == (303 if url == "/login" else 404)
        elif role == ADMIN_PAGE:
            assert answer.status_code == 403 and "needs the admin role" in answer.text
        else:
            assert answer.status_code == 200 and "<main" in answer.text
            assert "Sign out" in answer.text and 'href="/users"' not in answer.text, "an admin link shown"
    async with api.session(api.seeded.admin_user) as admin:
        answer = await admin.get(url)
        if role == SIGNED_OUT_PAGE:
            assert answer.status_code == (303 if url == "/login" else 404)
        else:
            assert answer.status_code == 200 and 'href="/users"' in answer.text, "no admin link for an admin"


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param(UNKNOWN_KEY, id="unknown"),
        pytest.param(ADMIN.encode() * 3, id="not-a-key"),
        pytest.param(b"frk_\xff\xfe\xe9", id="non-ascii-bytes"),
        pytest.param("frk_ünïcode".encode(), id="utf-8"),
    ],
)
async def test_a_bad_key_is_401_never_5xx(api: Api, key: str | bytes) -> None:
    async with api.client(key) as client:
        assert_problem(await client.get("/v1/people"), 401)
        assert_problem(await client.post("/v1/people", json={"name": "Eve"}), 401)


async def test_a_revoked_key_is_refused_at_once(api: Api) -> None:
    async with api.client(api.seeded.spare_key) as spare:
        assert (await spare.get("/v1/people")).status_code == 200  # now remembered by the live view
        async with api.client(api.seeded.admin_key) as admin:
            revoked = await admin.delete(f"/v1/keys/{api.seeded.spare_key_id}")
            assert revoked.status_code == 204, revoked.text
            listed = (await admin.get("/v1/keys")).json()["items"]
        assert_problem(await spare.get("/v1/people"), 401)
    assert {k["name"]: k["revoked"] for k in listed}["spare"] is True


async def test_the_last_admin_key_is_not_revoked(api: Api) -> None:
    async with api.client(api.seeded.admin_key) as admin:
        keys = (await admin.get("/v1/keys")).json()["items"]
        (own,) = [k["id"] for k in keys if k["role"] == "admin" and not k["revoked"]]
        problem = assert_problem(await admin.delete(f"/v1/keys/{own}"), 409)
        assert "last admin key" in problem["detail"]
        assert (await admin.get("/v1/keys")).status_code == 200  # the key still works


async def test_a_created_key_works_with_its_role_and_is_shown_once(api: Api) -> None:
    async with api.client(api.seeded.admin_key) as admin:
        created = await admin.post("/v1/keys", json={"name": "kiosk-9", "role": "recognize"})
        assert created.status_code == 201, created.text
        listed = (await admin.get("/v1/keys")).json()["items"]
    key = created.json()["key"]
    assert all("key" not in item for item in listed)
    assert key not in str(listed)
    async with api.client(key) as kiosk:
        assert (await kiosk.get("/v1/people")).status_code == 200
        assert_problem(await kiosk.get("/v1/keys"), 403)


async def test_the_role_table_agrees_with_the_openapi_security(api: Api) -> None:
    """Every route that needs a key says so in /openapi.json (what client generators read)."""
    async with api.client() as anonymous:
        schema = (await anonymous.get("/openapi.json")).json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            needs_key = ROLES[(method.upper(), path)] != PUBLIC
            assert bool(operation.get("security")) == needs_key, (method, path)
