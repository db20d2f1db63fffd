"""Signing in and out through the pages, and what a signed-out browser is shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.stack import Stack
from tests.web.conftest import USERS

pytestmark = pytest.mark.integration


def test_a_signed_out_browser_is_sent_to_sign_in_and_back_where_it_was_going(
    open_page: Callable[..., Any],
) -> None:
    page = open_page()
    page.goto("/people?q=ann")
    assert page.url.endswith("/login?next=%2Fpeople%3Fq%3Dann")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(USERS["ada"][1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/people?q=ann")
    assert page.locator("#who").inner_text().startswith("ada")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    page.goto("/recognise")
    assert "/login?next=" in page.url, "the session ended with the sign-out"


def test_a_wrong_password_is_said_in_words_and_signs_nobody_in(open_page: Callable[..., Any]) -> None:
    page = open_page()
    page.goto("/login")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text() == "Wrong username or password."
    assert page.context.cookies() == [] or all(c["name"] != "facerec_session" for c in page.context.cookies())


def test_sign_in_never_sends_the_browser_to_another_site(
    open_page: Callable[..., Any], web_stack: Stack
) -> None:
    page = open_page("ada")
    for target in ("//elsewhere.example/x", "https://elsewhere.example/x", "/\\elsewhere.example"):
        page.goto(f"/login?next={quote(target, safe='')}")
        assert page.url == f"{web_stack.url}/", target


def test_a_recognize_user_sees_no_admin_pages_and_is_refused_them(open_page: Callable[..., Any]) -> None:
    page = open_page("rex")
    page.goto("/recognise")
    menu = page.get_by_role("navigation", name="Pages").get_by_role("link").all_inner_texts()
    assert menu == ["Recognise", "People", "Jobs", "Account"]
    for admin_page in ("/models", "/dashboard", "/users"):
        answer = page.goto(admin_page)
        assert answer is not None and answer.status == 403
        assert "needs the admin role" in page.locator("#forbidden").inner_text()
