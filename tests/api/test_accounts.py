"""User accounts in-process: login and its cookies, CSRF, the throttle, registration, users.

Who may call which route, by key and by session, is in ``test_auth``; this is what the
accounts themselves do.
"""

from __future__ import annotations

from dataclasses import replace
from http.cookies import SimpleCookie

import httpx
import pytest

from orchestrator.accounts import login
from orchestrator.accounts.passwords import DUMMY_HASH, verify_password
from orchestrator.api.deps import CSRF_COOKIE, SESSION_COOKIE
from orchestrator.core.resources import Resources
from orchestrator.core.settings import AuthSettings
from tests.api.conftest import PASSWORD, Api, assert_problem

pytestmark = pytest.mark.unit

ADA = {"username": "ada", "password": PASSWORD}


def with_auth(api: Api, **settings: object) -> None:
    """The harness's app with these ``FACEREC_AUTH__`` settings."""
    resources: Resources = api.app.state.resources
    auth = AuthSettings.model_validate({**resources.settings.auth.model_dump(), **settings})
    api.app.state.resources = replace(
        resources, settings=resources.settings.model_copy(update={"auth": auth})
    )


def set_cookies(answer: httpx.Response) -> dict[str, SimpleCookie]:
    """Each cookie the answer sets, with its attributes, by name."""
    cookies = {}
    for header in answer.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        (name,) = cookie.keys()
        cookies[name] = cookie
    return cookies


async def test_login_sets_an_http_only_session_and_a_readable_csrf_cookie(api: Api) -> None:
    async with api.client() as browser:
        answer = await browser.post("/v1/auth/login", json={"username": "ADA", "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["username"], body["role"]) == ("ada", "recognize")  # usernames ignore case
        cookies = set_cookies(answer)
        session, csrf = cookies[SESSION_COOKIE][SESSION_COOKIE], cookies[CSRF_COOKIE][CSRF_COOKIE]
        assert session["httponly"] and not csrf["httponly"]
        assert session["samesite"] == csrf["samesite"] == "lax"
        assert not session["secure"] and not csrf["secure"]  # plain http, as here
        assert csrf.value == body["csrf_token"] != session.value
        assert int(session["max-age"]) == 12 * 3600
        me = await browser.get("/v1/auth/me")
        assert me.status_code == 200, me.text
        assert {k: me.json()[k] for k in ("kind", "name", "role")} == {
            "kind": "user",
            "name": "ada",
            "role": "recognize",
        }
    assert PASSWORD not in answer.text


@pytest.mark.parametrize(
    ("base_url", "forwarded", "setting", "secure"),
    [
        ("https://test", None, "auto", True),
        ("http://test", None, "always", True),
        ("https://test", None, "never", False),
    ],
)
async def test_the_cookies_are_secure_over_https(
    api: Api, base_url: str, forwarded: str | None, setting: str, secure: bool
) -> None:
    with_auth(api, cookie_secure=setting)
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as browser:
        answer = await browser.post("/v1/auth/login", json=ADA)
    assert answer.status_code == 200, answer.text
    cookies = set_cookies(answer)
    assert bool(cookies[SESSION_COOKIE][SESSION_COOKIE]["secure"]) is secure
    assert bool(cookies[CSRF_COOKIE][CSRF_COOKIE]["secure"]) is secure


async def test_logout_ends_the_session_even_for_a_copy_of_its_cookie(api: Api) -> None:
    async with api.session("ada") as ada:
        token = ada.cookies[SESSION_COOKIE]
        assert_problem(
            await ada.post("/v1/auth/logout", headers={"X-CSRF-Token": "wrong"}), 403, "X-CSRF-Token"
        )
        out = await ada.post("/v1/auth/logout")
        assert out.status_code == 204, out.text
        cleared = set_cookies(out)
        assert cleared[SESSION_COOKIE][SESSION_COOKIE].value == "" and cleared[CSRF_COOKIE]
        assert_problem(await ada.get("/v1/auth/me"), 401)
    async with api.client() as thief:
        thief.cookies.set(SESSION_COOKIE, token)
        assert_problem(await thief.get("/v1/auth/me"), 401, "log in again")


async def test_a_session_write_needs_the_csrf_token_and_a_key_needs_none(api: Api) -> None:
    async with api.session("root") as root:
        grace = {"username": "grace", "password": "cobol-1959", "role": "recognize"}
        csrf = root.headers.pop("X-CSRF-Token")
        assert_problem(await root.post("/v1/users", json=grace), 403, "X-CSRF-Token")
        assert (await root.get("/v1/users")).status_code == 200  # a read needs none
        # The key wins over the cookie: no CSRF token, and the key's role, not the user's.
        with_key = await root.post("/v1/users", json=grace, headers={"X-API-Key": api.seeded.admin_key})
        assert with_key.status_code == 201, with_key.text
        assert_problem(
            await root.get("/v1/users", headers={"X-API-Key": api.seeded.recognize_key}), 403, "key"
        )
        assert_problem(await root.get("/v1/users", headers={"X-API-Key": "frk_unknown"}), 401)
        root.headers["X-CSRF-Token"] = csrf
        again = await root.post("/v1/users", json={**grace, "username": "grace2"})
        assert again.status_code == 201, again.text


async def test_another_session_s_csrf_token_is_refused(api: Api) -> None:
    async with api.session("root") as root, api.session("ada") as ada:
        foreign = {"X-CSRF-Token": ada.headers["X-CSRF-Token"]}
        assert_problem(await root.delete(f"/v1/users/{api.seeded.spare_user_id}", headers=foreign), 403)
        assert (await root.delete(f"/v1/users/{api.seeded.spare_user_id}")).status_code == 204


async def test_a_wrong_password_and_an_unknown_user_are_refused_alike(api: Api) -> None:
    async with api.client() as client:
        wrong = assert_problem(await client.post("/v1/auth/login", json={**ADA, "password": "nope"}), 401)
        unknown = assert_problem(
            await client.post("/v1/auth/login", json={"username": "nobody", "password": "nope"}), 401
        )
    assert SESSION_COOKIE not in client.cookies
    assert {k: wrong[k] for k in ("type", "title", "detail")} == {
        k: unknown[k] for k in ("type", "title", "detail")
    }


async def test_an_unknown_username_costs_an_argon2_verification_too(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same work as a wrong password, so the answer's timing does not tell the name exists."""
    verified: list[str] = []

    def spy(password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return verify_password(password_hash, password)

    monkeypatch.setattr(login, "verify_password", spy)
    async with api.client() as client:
        for name in ("nobody", "ada"):
            assert_problem(
                await client.post("/v1/auth/login", json={"username": name, "password": "nope"}), 401
            )
    assert verified[0] == DUMMY_HASH and verified[1].startswith("$argon2id$") and verified[1] != DUMMY_HASH


@pytest.mark.parametrize("username", ["ada", "nobody"])
async def test_repeated_failures_are_throttled_for_known_and_unknown_names_alike(
    api: Api, username: str
) -> None:
    with_auth(api, login_max_failures=3, login_window_s=600)
    async with api.client() as guesser:
        for _ in range(3):
            assert_problem(
                await guesser.post("/v1/auth/login", json={"username": username, "password": "x"}), 401
            )
        # Now even the right password waits: the answer says nothing about the name.
        throttled = await guesser.post(
            "/v1/auth/login", json={"username": username.upper(), "password": PASSWORD}
        )
        problem = assert_problem(throttled, 429, "too many failed logins")
    assert 590 <= int(throttled.headers["retry-after"]) <= 600
    assert problem["type"].endswith("/too-many-attempts")
    async with api.session("root") as root:  # another username is not held up
        assert (await root.get("/v1/auth/me")).status_code == 200


async def test_failures_from_one_address_are_throttled_across_usernames(api: Api) -> None:
    with_auth(api, login_max_failures_per_address=2)
    async with api.client() as sprayer:
        for name in ("root", "ada"):
            assert_problem(
                await sprayer.post("/v1/auth/login", json={"username": name, "password": "x"}), 401
            )
        assert_problem(
            await sprayer.post("/v1/auth/login", json={"username": "spare-user", "password": PASSWORD}), 429
        )


async def test_a_success_clears_the_username_s_failures(api: Api) -> None:
    with_auth(api, login_max_failures=2)
    async with api.client() as client:
        assert_problem(await client.post("/v1/auth/login", json={**ADA, "password": "x"}), 401)
        assert (await client.post("/v1/auth/login", json=ADA)).status_code == 200
        assert_problem(await client.post("/v1/auth/login", json={**ADA, "password": "x"}), 401)
        assert (await client.post("/v1/auth/login", json=ADA)).status_code == 200


async def test_registration_is_closed_unless_opened_and_makes_recognize_users(api: Api) -> None:
    grace = {"username": "Grace", "password": "cobol-1959"}
    async with api.client() as visitor:
        assert_problem(await visitor.post("/v1/auth/register", json=grace), 403, "registration is closed")
        with_auth(api, open_registration=True)
        made = await visitor.post("/v1/auth/register", json={**grace, "role": "admin"})
        assert made.status_code == 201, made.text
        assert (made.json()["username"], made.json()["role"]) == ("grace", "recognize")
        assert_problem(await visitor.post("/v1/auth/register", json={**grace, "username": "GRACE"}), 409)
        short = assert_problem(
            await visitor.post("/v1/auth/register", json={**grace, "password": "short"}), 422
        )
        assert short["errors"][0]["loc"] == ["body", "password"]
    async with api.session("grace", "cobol-1959") as signed_in:
        assert_problem(await signed_in.get("/v1/users"), 403, "user grace")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("password", "1234567"),
        ("password", "x" * 257),
        ("username", "ada lovelace"),
        ("username", "a" * 65),
        ("username", ""),
        ("role", "root"),
    ],
)
async def test_a_user_outside_the_rules_is_a_422_naming_the_field(
    admin: httpx.AsyncClient, field: str, value: str
) -> None:
    body = {"username": "grace", "password": "cobol-1959", "role": "recognize", field: value}
    problem = assert_problem(await admin.post("/v1/users", json=body), 422)
    assert problem["errors"][0]["loc"] == ["body", field]


async def test_users_are_created_listed_and_deleted_by_admins(api: Api, admin: httpx.AsyncClient) -> None:
    made = await admin.post(
        "/v1/users", json={"username": "Grace", "password": "cobol-1959", "role": "admin"}
    )
    assert made.status_code == 201, made.text
    user = made.json()
    assert user.keys() == {"id", "username", "role", "created_at"}  # never the hash
    assert_problem(
        await admin.post("/v1/users", json={"username": "GRACE", "password": "another-1", "role": "admin"}),
        409,
        "taken",
    )
    listed = (await admin.get("/v1/users")).json()["items"]
    assert [u["username"] for u in listed] == ["root", "ada", "spare-user", "grace"]
    async with api.session("grace", "cobol-1959") as grace:
        assert (await grace.get("/v1/users")).status_code == 200  # an admin user
    assert (await admin.delete(f"/v1/users/{user['id']}")).status_code == 204
    assert_problem(await admin.delete(f"/v1/users/{user['id']}"), 404)
    async with api.client() as client:
        assert_problem(
            await client.post("/v1/auth/login", json={"username": "grace", "password": "cobol-1959"}), 401
        )


async def test_deleting_a_user_ends_its_sessions_at_once(api: Api, admin: httpx.AsyncClient) -> None:
    async with api.session("spare-user") as spare:
        assert (await spare.get("/v1/people")).status_code == 200
        assert (await admin.delete(f"/v1/users/{api.seeded.spare_user_id}")).status_code == 204
        assert_problem(await spare.get("/v1/people"), 401, "log in again")


async def test_an_expired_session_is_refused(api: Api) -> None:
    with_auth(api, session_ttl_s=0.001)
    async with api.client() as browser:
        assert (await browser.post("/v1/auth/login", json=ADA)).status_code == 200
        assert_problem(await browser.get("/v1/auth/me"), 401, "expired")


async def test_me_names_the_key_for_a_key(recognizer: httpx.AsyncClient) -> None:
    me = (await recognizer.get("/v1/auth/me")).json()
    assert (me["kind"], me["name"], me["role"]) == ("key", "kiosk", "recognize")
    assert (
        await recognizer.post("/v1/auth/logout")
    ).status_code == 204  # nothing to end; the key still works
    assert (await recognizer.get("/v1/auth/me")).status_code == 200


async def test_the_last_admin_user_is_kept_whoever_asks(api: Api, admin: httpx.AsyncClient) -> None:
    """root is the harness's only admin user: neither it nor an admin key may remove the last."""
    users = {u["username"]: u["id"] for u in (await admin.get("/v1/users")).json()["items"]}
    root = f"/v1/users/{users['root']}"
    async with api.session("root") as itself:
        assert_problem(await itself.delete(root), 409, "'root' is the last admin user")
        assert_problem(await itself.patch(root, json={"role": "recognize"}), 409, "make another user admin")
        assert (await itself.get("/v1/users")).status_code == 200  # still admin, still signed in
    assert_problem(await admin.delete(root), 409, "last admin user")
    assert_problem(await admin.patch(root, json={"role": "recognize"}), 409)
    promoted = await admin.patch(f"/v1/users/{users['ada']}", json={"role": "admin"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin", promoted.text
    async with api.session("root") as itself:
        demoted = await itself.patch(root, json={"role": "recognize"})  # ada is admin now
        assert demoted.status_code == 200 and demoted.json()["role"] == "recognize", demoted.text
        assert_problem(await itself.get("/v1/users"), 403, "user root")  # at once, same session
    assert_problem(await admin.delete(f"/v1/users/{users['ada']}"), 409, "'ada'")


async def test_a_role_change_holds_from_the_user_s_next_request(api: Api, admin: httpx.AsyncClient) -> None:
    ada_id = next(u["id"] for u in (await admin.get("/v1/users")).json()["items"] if u["username"] == "ada")
    async with api.session("ada") as ada:
        assert_problem(await ada.get("/v1/users"), 403)
        assert (await admin.patch(f"/v1/users/{ada_id}", json={"role": "admin"})).status_code == 200
        assert (await ada.get("/v1/users")).status_code == 200
        assert (await ada.get("/v1/auth/me")).json()["role"] == "admin"
        assert (await admin.patch(f"/v1/users/{ada_id}", json={"role": "recognize"})).status_code == 200
        assert_problem(await ada.get("/v1/users"), 403, "role 'recognize'")


async def test_a_password_reset_ends_the_user_s_sessions(api: Api, admin: httpx.AsyncClient) -> None:
    spare = f"/v1/users/{api.seeded.spare_user_id}"
    async with api.session("spare-user") as old:
        changed = await admin.patch(spare, json={"password": "a-new-one-9"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["role"] == "recognize" and "password" not in changed.text
        assert_problem(await old.get("/v1/auth/me"), 401, "log in again")
    async with api.client() as client:
        wrong = {"username": "spare-user", "password": PASSWORD}
        assert_problem(await client.post("/v1/auth/login", json=wrong), 401)
    async with api.session("spare-user", "a-new-one-9") as new:
        assert (await new.get("/v1/auth/me")).status_code == 200


async def test_an_admin_resetting_its_own_password_stays_signed_in(
    api: Api, admin: httpx.AsyncClient
) -> None:
    root_id = next(u["id"] for u in (await admin.get("/v1/users")).json()["items"] if u["username"] == "root")
    async with api.session("root") as asking, api.session("root") as elsewhere:
        assert (
            await asking.patch(f"/v1/users/{root_id}", json={"password": "rooted-again"})
        ).status_code == 200
        assert (await asking.get("/v1/users")).status_code == 200
        assert_problem(await elsewhere.get("/v1/users"), 401)


@pytest.mark.parametrize(
    ("field", "value"), [("role", "root"), ("password", "short"), ("password", "x" * 257)]
)
async def test_a_change_outside_the_rules_is_a_422_naming_the_field(
    api: Api, admin: httpx.AsyncClient, field: str, value: str
) -> None:
    problem = assert_problem(
        await admin.patch(f"/v1/users/{api.seeded.spare_user_id}", json={field: value}), 422
    )
    assert problem["errors"][0]["loc"] == ["body", field]


@pytest.mark.parametrize("body", [{}, {"role": None, "password": None}])
async def test_a_change_of_nothing_answers_the_user_as_it_is(
    api: Api, admin: httpx.AsyncClient, body: dict[str, object]
) -> None:
    async with api.session("spare-user") as spare:
        same = await admin.patch(f"/v1/users/{api.seeded.spare_user_id}", json=body)
        assert same.status_code == 200, same.text
        assert (same.json()["username"], same.json()["role"]) == ("spare-user", "recognize")
        assert (await spare.get("/v1/auth/me")).status_code == 200  # no password change: still in


async def test_a_change_of_an_unknown_user_is_404(admin: httpx.AsyncClient) -> None:
    assert_problem(await admin.patch("/v1/users/999999", json={"role": "admin"}), 404, "user 999999")


async def test_a_user_changes_its_own_password_and_its_other_sessions_end(api: Api) -> None:
    new = {"current_password": PASSWORD, "new_password": "lovelace-1815"}
    async with api.session("ada") as asking, api.session("ada") as elsewhere:
        wrong = await asking.post("/v1/auth/password", json={**new, "current_password": "nope"})
        assert_problem(wrong, 403, "the current password is wrong")
        assert (await elsewhere.get("/v1/auth/me")).status_code == 200  # nothing changed
        assert_problem(await asking.post("/v1/auth/password", json={**new, "new_password": "short"}), 422)
        changed = await asking.post("/v1/auth/password", json=new)
        assert changed.status_code == 204, changed.text
        assert (await asking.get("/v1/auth/me")).json()["name"] == "ada"
        assert_problem(await elsewhere.get("/v1/auth/me"), 401, "log in again")
    async with api.client() as client:
        assert_problem(await client.post("/v1/auth/login", json=ADA), 401)
    async with api.session("ada", "lovelace-1815") as again:
        assert (await again.get("/v1/auth/me")).status_code == 200


async def test_a_wrong_current_password_counts_as_a_failed_login(api: Api) -> None:
    """A stolen session does not let its thief guess the password faster than the login does."""
    with_auth(api, login_max_failures=2)
    guess = {"current_password": "guess", "new_password": "lovelace-1815"}
    async with api.session("ada") as ada:
        for _ in range(2):
            assert_problem(await ada.post("/v1/auth/password", json=guess), 403)
        right = await ada.post("/v1/auth/password", json={**guess, "current_password": PASSWORD})
        assert_problem(right, 429, "too many failed logins")
        assert int(right.headers["retry-after"]) > 0
    async with api.client() as client:
        assert_problem(await client.post("/v1/auth/login", json=ADA), 429)


async def test_a_key_has_no_password_to_change(admin: httpx.AsyncClient) -> None:
    body = {"current_password": PASSWORD, "new_password": "lovelace-1815"}
    assert_problem(await admin.post("/v1/auth/password", json=body), 403, "has no password")


async def test_registration_is_throttled_per_address_apart_from_logins(api: Api) -> None:
    with_auth(api, open_registration=True, login_max_failures_per_address=2, login_window_s=600)
    async with api.client() as visitor:
        made = [
            (await visitor.post("/v1/auth/register", json={"username": "grace", "password": "cobol-1959"}))
            for _ in range(2)
        ]
        assert [m.status_code for m in made] == [201, 409]  # a taken name counts too: it cost a hash
        flooded = await visitor.post(
            "/v1/auth/register", json={"username": "hopper", "password": "cobol-1959"}
        )
        assert_problem(flooded, 429, "too many registrations from this address")
        assert 590 <= int(flooded.headers["retry-after"]) <= 600
        assert (await visitor.post("/v1/auth/login", json=ADA)).status_code == 200  # logins go on
    async with api.client() as client:
        assert_problem(
            await client.post("/v1/auth/login", json={"username": "hopper", "password": "cobol-1959"}), 401
        )


async def test_the_register_page_is_there_only_while_registration_is_open(api: Api) -> None:
    async with api.client() as visitor:
        assert (await visitor.get("/register")).status_code == 404
        assert 'href="/register"' not in (await visitor.get("/login")).text
        with_auth(api, open_registration=True)
        page = await visitor.get("/register")
        assert page.status_code == 200 and 'id="register"' in page.text
        assert 'href="/register"' in (await visitor.get("/login")).text
