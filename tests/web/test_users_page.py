"""The Users page (admin) and the Account page (everyone), in a real browser.

The shared stack's ada is its only admin user, and other tests sign in as ada and rex with
``USERS``' passwords: the users this file changes are its own, removed at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.conftest import PHONE

pytestmark = pytest.mark.integration

OWN = "page-made"
OWN_PASSWORD = "page-made-password-1"


def users_by_name(api: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = api.get("/v1/users")
    assert answer.status_code == 200, answer.text
    return {user["username"]: user for user in answer.json()["items"]}


@pytest.fixture
def own_user(api: httpx.Client) -> Iterator[str]:
    """A username this test may make; whatever is left of it is deleted afterwards."""
    yield OWN
    left = users_by_name(api).get(OWN)
    if left is not None:
        api.delete(f"/v1/users/{left['id']}")


def sign_in(page: Any, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")


def test_an_admin_adds_a_user_promotes_it_and_deletes_it(
    open_page: Callable[..., Any], api: httpx.Client, own_user: str
) -> None:
    ada = open_page("ada")
    ada.goto("/users")
    ada.locator("#users tbody tr[data-username=ada]").wait_for()
    form = ada.locator("#add-user")
    form.get_by_label("Username").fill(own_user.upper())
    form.get_by_label("Password").fill(OWN_PASSWORD)
    form.get_by_label("Role").select_option("recognize")
    form.get_by_role("button", name="Add user").click()
    assert ada.get_by_role("status").filter(has_text="added").inner_text() == (
        f"{own_user} is added with the role recognize."
    )
    row = ada.locator(f'#users tbody tr[data-username="{own_user}"]')
    assert row.get_by_label(f"Role of {own_user}").input_value() == "recognize"
    assert users_by_name(api)[own_user]["role"] == "recognize"

    row.get_by_label(f"Role of {own_user}").select_option("admin")
    row.get_by_role("button", name="Change role").click()
    ada.get_by_text(f"{own_user} now has the role admin.").wait_for()
    assert users_by_name(api)[own_user]["role"] == "admin"

    theirs = open_page()  # a browser of their own
    sign_in(theirs, own_user, OWN_PASSWORD)
    menu = theirs.get_by_role("navigation", name="Pages").get_by_role("link").all_inner_texts()
    assert {"Models", "Dashboard", "Users"} <= set(menu)
    assert theirs.locator("#who").inner_text().startswith(own_user)

    row.get_by_role("button", name="Delete").click()
    dialog = ada.locator("#delete-dialog")
    assert own_user in dialog.inner_text()
    dialog.get_by_role("button", name="Delete").click()
    ada.get_by_text(f"{own_user} is deleted.").wait_for()
    assert row.count() == 0 and own_user not in users_by_name(api)
    theirs.goto("/users")
    assert "/login?next=" in theirs.url, "their session ended with the user"


def test_the_last_admin_user_cannot_demote_herself_and_is_told_why(
    open_page: Callable[..., Any], api: httpx.Client
) -> None:
    admins = [name for name, user in users_by_name(api).items() if user["role"] == "admin"]
    assert admins == ["ada"], "the stack's only admin user"
    page = open_page("ada", viewport=PHONE)
    page.goto("/users")
    row = page.locator("#users tbody tr[data-username=ada]")
    assert "you" in row.get_by_role("rowheader").inner_text()
    row.get_by_label("Role of ada").select_option("recognize")
    row.get_by_role("button", name="Change role").click()
    alert = page.locator("#problem")
    expect(alert).to_contain_text("'ada' is the last admin user and cannot be demoted")
    assert row.get_by_label("Role of ada").input_value() == "admin"  # shown as it still is
    row.get_by_role("button", name="Delete").click()
    page.locator("#delete-dialog").get_by_role("button", name="Delete").click()
    expect(alert).to_contain_text("'ada' is the last admin user and cannot be deleted")
    assert users_by_name(api)["ada"]["role"] == "admin"
    assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0


def test_an_admin_resets_a_password_and_the_old_one_stops_working(
    open_page: Callable[..., Any], api: httpx.Client, own_user: str
) -> None:
    made = api.post("/v1/users", json={"username": own_user, "password": OWN_PASSWORD, "role": "recognize"})
    assert made.status_code == 201, made.text
    theirs = open_page()
    sign_in(theirs, own_user, OWN_PASSWORD)
    ada = open_page("ada")
    ada.goto("/users")
    ada.locator(f'#users tbody tr[data-username="{own_user}"]').get_by_role(
        "button", name="Reset password"
    ).click()
    dialog = ada.locator("#reset-dialog")
    dialog.get_by_label("New password").fill("short")
    dialog.get_by_role("button", name="Set password").click()
    expect(dialog.get_by_role("alert")).to_have_text("The password needs at least 8 characters.")
    dialog.get_by_label("New password").fill("a-fresh-one-22")
    dialog.get_by_role("button", name="Set password").click()
    ada.get_by_text(f"The password of {own_user} is changed").wait_for()
    assert not dialog.is_visible()
    theirs.goto("/people")
    assert "/login?next=" in theirs.url, "a reset ends the user's sessions"
    sign_in(theirs, own_user, "a-fresh-one-22")


def test_a_user_changes_their_own_password_on_the_account_page(
    open_page: Callable[..., Any], api: httpx.Client, own_user: str
) -> None:
    made = api.post("/v1/users", json={"username": own_user, "password": OWN_PASSWORD, "role": "recognize"})
    assert made.status_code == 201, made.text
    page = open_page()
    sign_in(page, own_user, OWN_PASSWORD)
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Account").click()
    page.wait_for_url("**/account")
    assert page.locator("#account-name").inner_text() == own_user
    assert page.locator("#account-role").inner_text() == "recognize"
    form = page.locator("#password")
    form.get_by_label("Current password").fill("not-my-password")
    form.get_by_label("New password", exact=True).fill("my-new-password-3")
    form.get_by_label("New password again").fill("my-new-password-3")
    form.get_by_role("button", name="Change password").click()
    alert = page.locator("#problem")
    expect(alert).to_contain_text("the current password is wrong")
    form.get_by_label("Current password").fill(OWN_PASSWORD)
    form.get_by_role("button", name="Change password").click()
    page.get_by_role("status").filter(has_text="Your password is changed").wait_for()
    assert alert.is_hidden()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    page.get_by_label("Username").fill(own_user)
    page.get_by_label("Password").fill(OWN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    sign_in(page, own_user, "my-new-password-3")


def test_registration_is_closed_unless_switched_on(open_page: Callable[..., Any]) -> None:
    page = open_page()
    answer = page.goto("/register")
    assert answer is not None and answer.status == 404
    page.goto("/login")
    assert page.get_by_role("link", name="Create one").count() == 0
    assert "An admin creates one" in page.locator("main").inner_text()
