"""What the OpenAPI spec declares: each route's statuses, every error a Problem as problem+json.

The table below is the contract a client reads; ``test_fuzz`` checks that the server keeps it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.unit

PROBLEM_JSON = "application/problem+json"
AUTH = {401}
SESSION_WRITE = {401, 403}
"""Anyone signed in, by an unsafe method: a session without its CSRF token is refused 403."""
ADMIN = {401, 403}
JSON_BODY = {400, 413, 422}
IMAGE = {400, 413, 415, 422, 503}

STATUSES: dict[tuple[str, str], set[int]] = {
    ("GET", "/health"): {200},
    ("GET", "/health/live"): {200},
    ("GET", "/health/ready"): {200, 503},
    ("GET", "/health/detailed"): {200, 503} | AUTH,
    ("GET", "/v1/people"): {200, 422} | AUTH,
    ("GET", "/v1/people/{person_id}"): {200, 404, 422} | AUTH,
    ("GET", "/v1/people/{person_id}/faces"): {200, 404, 422} | AUTH,
    ("POST", "/v1/recognize"): {200} | IMAGE | SESSION_WRITE,
    ("POST", "/v1/recognize/batch"): {200, 400, 413, 422, 503} | SESSION_WRITE,
    ("POST", "/v1/verify"): {200} | IMAGE | SESSION_WRITE,
    ("POST", "/v1/detect"): {200} | IMAGE | SESSION_WRITE,
    # JSON, or a form with photos (which may be corrupt, not images, faceless, or refused busy).
    ("POST", "/v1/people"): {201, 409} | IMAGE | ADMIN,
    ("PATCH", "/v1/people/{person_id}"): {200, 404, 409} | JSON_BODY | ADMIN,
    ("DELETE", "/v1/people/{person_id}"): {204, 404, 422} | ADMIN,
    # 409: the face is of someone else enrolled already (force=true enrols it anyway).
    ("POST", "/v1/people/{person_id}/faces"): {201, 404, 409} | IMAGE | ADMIN,
    ("DELETE", "/v1/faces/{face_id}"): {204, 404, 422} | ADMIN,
    ("GET", "/v1/faces/{face_id}/image"): {200, 404, 422} | AUTH,
    ("GET", "/v1/keys"): {200} | ADMIN,
    ("POST", "/v1/keys"): {201} | JSON_BODY | ADMIN,
    ("DELETE", "/v1/keys/{key_id}"): {204, 404, 409, 422} | ADMIN,
    ("GET", "/v1/models"): {200, 503} | ADMIN,
    ("GET", "/v1/models/rollouts"): {200, 422} | ADMIN,
    ("POST", "/v1/models/rollouts"): {202, 409} | JSON_BODY | ADMIN,
    ("GET", "/v1/models/rollouts/{rollout_id}"): {200, 404, 422} | ADMIN,
    ("POST", "/v1/models/rollouts/{rollout_id}/rollback"): {202, 404, 409, 422} | ADMIN,
    ("GET", "/v1/log"): {200, 422} | ADMIN,
    ("GET", "/v1/stats"): {200, 422} | ADMIN,
    ("GET", "/v1/stats/live"): {200, 422} | ADMIN,
    ("GET", "/v1/index"): {200, 503} | ADMIN,
    ("POST", "/v1/index/rebuild"): {202, 409} | ADMIN,
    ("DELETE", "/v1/people"): {200, 422, 503} | ADMIN,
    ("GET", "/v1/people/duplicates"): {200, 422} | ADMIN,
    ("GET", "/v1/calibration"): {200, 422} | ADMIN,
    ("POST", "/v1/calibration/recompute"): {200, 503} | ADMIN,
    # Any key; 403 is an enrol job sent with a recognize key. 503: no broker, or it is away.
    ("POST", "/v1/jobs"): {202, 400, 403, 413, 422, 503} | AUTH,
    ("GET", "/v1/jobs"): {200, 422} | AUTH,
    ("GET", "/v1/jobs/dead-letters"): {200, 422} | AUTH,
    ("GET", "/v1/jobs/workers"): {200} | AUTH,
    ("GET", "/v1/jobs/{job_id}"): {200, 404, 422} | AUTH,
    ("GET", "/v1/jobs/{job_id}/items"): {200, 404, 422} | AUTH,
    ("GET", "/v1/jobs/{job_id}/items/{index}/image"): {200, 404, 422} | AUTH,
    ("POST", "/v1/jobs/{job_id}/cancel"): {200, 404, 409, 422} | SESSION_WRITE,
    ("POST", "/v1/jobs/{job_id}/retry"): {200, 404, 409, 422, 503} | SESSION_WRITE,
    ("GET", "/v1/users"): {200} | ADMIN,
    ("POST", "/v1/users"): {201, 409} | JSON_BODY | ADMIN,
    # 409: the last admin user, which would be left no more (deleted or demoted).
    ("PATCH", "/v1/users/{user_id}"): {200, 404, 409} | JSON_BODY | ADMIN,
    ("DELETE", "/v1/users/{user_id}"): {204, 404, 409, 422} | ADMIN,
    # Wrong username or password (the same answer either way), or too many failures lately.
    ("POST", "/v1/auth/login"): {200, 401, 429} | JSON_BODY,
    # 403: registration is closed (the default); 429: too many from this address lately.
    ("POST", "/v1/auth/register"): {201, 403, 409, 429} | JSON_BODY,
    ("POST", "/v1/auth/logout"): {204} | SESSION_WRITE,
    ("GET", "/v1/auth/me"): {200} | AUTH,
    # 403: the current password is wrong, or a key asked; 429: too many wrong ones lately.
    ("POST", "/v1/auth/password"): {204, 403, 429} | JSON_BODY | SESSION_WRITE,
}
"""Every status each route can answer: its success, its auth (401, 403 on admin routes), 404
for an id, 409 for a conflict, 400/413/415/422 for a body, 503 where Triton, the search
service or admission can refuse. 405 and 500 belong to no route and are left out."""


async def spec_of(api: Api) -> dict[str, Any]:
    async with api.client() as anonymous:
        answer = await anonymous.get("/openapi.json")
    assert answer.status_code == 200, answer.text
    spec: dict[str, Any] = answer.json()
    return spec


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    }


async def test_each_route_declares_the_statuses_it_can_answer(api: Api) -> None:
    declared = {
        route: {int(status) for status in operation["responses"]}
        for route, operation in operations(await spec_of(api)).items()
    }
    assert declared == STATUSES


async def test_every_error_is_a_problem_with_its_headers(api: Api) -> None:
    spec = await spec_of(api)
    assert {"Problem", "InvalidField"} <= spec["components"]["schemas"].keys()
    assert "HTTPValidationError" not in spec["components"]["schemas"], "a route left FastAPI's own 422"
    for (method, path), operation in operations(spec).items():
        for status, response in operation["responses"].items():
            if int(status) < 400 or (path.startswith("/health/") and status == "503"):
                continue
            where = f"{method} {path} {status}"
            assert response["content"] == {
                PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, where
            headers = response["headers"]
            assert headers["X-Request-ID"]["required"], where
            if status == "401":
                assert headers["WWW-Authenticate"]["required"], where
            if status in ("429", "503"):
                assert headers["Retry-After"]["required"], where


async def test_a_problem_as_answered_matches_its_schema(api: Api, admin: httpx.AsyncClient) -> None:
    problem = (await spec_of(api))["components"]["schemas"]["Problem"]
    answer = (await admin.post("/v1/people", json={"name": "  "})).json()
    assert answer.keys() <= problem["properties"].keys()
    assert set(problem["required"]) <= answer.keys()
    assert answer["errors"][0]["loc"] == ["body", "name"]


async def test_a_405_names_every_method_of_the_path(admin: httpx.AsyncClient) -> None:
    """RFC 9110: ``Allow`` lists all of them, though routers of two roles share the path."""
    for path, methods in [
        ("/v1/people", {"GET", "POST", "DELETE"}),
        ("/v1/people/1", {"GET", "PATCH", "DELETE"}),
        ("/v1/people/duplicates", {"GET"}),  # not a person: its own resource
        ("/v1/keys", {"GET", "POST"}),
    ]:
        answer = await admin.put(path)
        assert answer.status_code == 405, answer.text
        assert {method.strip() for method in answer.headers["allow"].split(",")} == methods, path
