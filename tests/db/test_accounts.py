"""Users, sessions and failed logins, on every backend: hashed at rest, case-insensitive
usernames, sessions that end with their user or a new password, failures counted per name
and per address, registrations per address, and the last admin user kept, races included."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier, BrokenBarrierError

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from orchestrator.accounts.login import sign_in
from orchestrator.accounts.passwords import verify_password
from orchestrator.accounts.users import add_user, register
from orchestrator.core.errors import Conflict, NotFound, TooManyAttempts, Unauthorized
from orchestrator.core.settings import AuthSettings
from orchestrator.db import Gallery, accounts
from orchestrator.db.account_tables import UserSession
from orchestrator.db.accounts import token_hash
from orchestrator.db.tables import metadata
from orchestrator.db.types import utcnow

PASSWORD = "correct horse battery"


def stored_text(gallery: Gallery, table: str) -> str:
    with gallery.engine.connect() as connection:
        return " ".join(
            str(value) for row in connection.execute(select(metadata.tables[table])) for value in row
        )


def test_a_user_is_stored_with_an_argon2_hash_and_a_lower_cased_name(gallery: Gallery) -> None:
    user = add_user(gallery, "Ada.Lovelace", PASSWORD, "admin")
    assert (user.username, user.role) == ("ada.lovelace", "admin")
    text = stored_text(gallery, "app_user")
    assert PASSWORD not in text and "$argon2id$" in text
    found = gallery.credentials("ADA.LOVELACE")
    assert found is not None and found.user == user
    assert verify_password(found.password_hash, PASSWORD) and not verify_password(found.password_hash, "x")
    assert gallery.list_users() == [user]


def test_a_username_is_unique_whatever_its_case(gallery: Gallery) -> None:
    add_user(gallery, "ada", PASSWORD, "recognize")
    with pytest.raises(Conflict, match="taken"):
        add_user(gallery, "ADA", PASSWORD, "admin")
    other = add_user(gallery, "ada2", PASSWORD, "recognize")  # a prefix is another name
    assert [u.username for u in gallery.list_users()] == ["ada", "ada2"] and other.id


def test_a_session_is_found_by_its_token_stored_hashed(gallery: Gallery) -> None:
    user = add_user(gallery, "ada", PASSWORD, "recognize")
    session = gallery.start_session(user.id, timedelta(hours=1))
    text = stored_text(gallery, "user_session")
    assert session.token not in text and session.csrf_token not in text
    live = gallery.live_session(session.token)
    assert live is not None and live.user == user
    assert live.session_id == token_hash(session.token) and live.csrf_hash == token_hash(session.csrf_token)
    assert gallery.live_session(session.csrf_token) is None
    assert gallery.live_session(session.token + "x") is None
    gallery.end_session(live.session_id)
    assert gallery.live_session(session.token) is None


def test_an_expired_session_is_refused_and_removed_by_the_next_login(gallery: Gallery) -> None:
    user = add_user(gallery, "ada", PASSWORD, "recognize")
    old = gallery.start_session(user.id, timedelta(hours=1))
    with gallery.engine.begin() as connection:
        connection.execute(update(UserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert gallery.live_session(old.token) is None
    new = gallery.start_session(user.id, timedelta(hours=1))
    with gallery.engine.connect() as connection:
        assert connection.execute(select(UserSession.id)).scalars().all() == [token_hash(new.token)]


def test_deleting_a_user_ends_its_sessions_and_no_other(gallery: Gallery) -> None:
    ada = add_user(gallery, "ada", PASSWORD, "recognize")
    grace = add_user(gallery, "grace", PASSWORD, "admin")
    sessions = [gallery.start_session(ada.id, timedelta(hours=1)) for _ in range(2)]
    kept = gallery.start_session(grace.id, timedelta(hours=1))
    gallery.delete_user(ada.id)
    assert all(gallery.live_session(s.token) is None for s in sessions)
    assert gallery.live_session(kept.token) is not None
    assert gallery.credentials("ada") is None
    with pytest.raises(NotFound):
        gallery.delete_user(ada.id)


def test_failures_are_counted_per_username_and_per_address_within_the_window(gallery: Gallery) -> None:
    window = timedelta(minutes=10)
    gallery.record_login_failure("Ada", "10.0.0.1", window)
    gallery.record_login_failure("nobody", "10.0.0.1", window)
    gallery.record_login_failure("ada", "10.0.0.2", window)
    by_name, by_address = gallery.login_failures("ADA", "10.0.0.1", utcnow() - window)
    assert (len(by_name), len(by_address)) == (2, 2)
    assert by_name == sorted(by_name)
    assert gallery.login_failures("ada", "10.0.0.1", utcnow()) == ([], [])  # none after now
    gallery.forget_login_failures("ada")
    by_name, by_address = gallery.login_failures("ada", "10.0.0.1", utcnow() - window)
    assert (len(by_name), len(by_address)) == (0, 1)  # the address keeps its count
    gallery.record_login_failure("grace", "10.0.0.3", timedelta(0))  # an empty window prunes the rest
    assert len(stored_text(gallery, "login_failure").split("10.0.0.")) == 2


def test_a_burst_of_parallel_guesses_gets_no_more_than_the_limit(gallery: Gallery) -> None:
    """Each attempt is counted before it looks at the others: checked first and counted after,
    all eight would have found no failures yet and been let through to guess. (Counted first,
    attempts of one burst may refuse each other: none guesses, which is the safe side.)"""
    add_user(gallery, "ada", PASSWORD, "recognize")
    settings = AuthSettings(login_max_failures=3, login_window_s=60)
    start = Barrier(8)

    def guess(n: int) -> str:
        start.wait()
        try:
            sign_in(gallery, settings, "ada", f"guess-{n}", f"10.0.0.{n}")
        except (Unauthorized, TooManyAttempts) as refused:
            return type(refused).__name__
        return "signed in"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(guess, range(8)))
    guessed = outcomes.count("Unauthorized")
    assert guessed <= 3 and outcomes.count("TooManyAttempts") == 8 - guessed
    # Only the guesses count (a refusal does not), so the right password waits only past 3.
    if guessed == 3:
        with pytest.raises(TooManyAttempts):
            sign_in(gallery, settings, "ada", PASSWORD, "10.0.1.1")
    else:
        assert sign_in(gallery, settings, "ada", PASSWORD, "10.0.1.1")[0].username == "ada"


def test_sign_in_throttles_a_known_and_an_unknown_name_alike(gallery: Gallery) -> None:
    add_user(gallery, "ada", PASSWORD, "recognize")
    settings = AuthSettings(login_max_failures=2, login_window_s=60)
    for name in ("ada", "nobody"):
        for _ in range(2):
            with pytest.raises(Unauthorized, match="wrong username or password"):
                sign_in(gallery, settings, name, "wrong", f"addr-{name}")
        with pytest.raises(TooManyAttempts) as refused:
            sign_in(gallery, settings, name, PASSWORD, f"addr-{name}")
        assert 1 <= refused.value.retry_after_s <= 60
    user, session = sign_in(
        gallery, settings.model_copy(update={"login_max_failures": 3}), "ADA", PASSWORD, "a"
    )
    assert user.username == "ada" and gallery.live_session(session.token) is not None


def test_the_last_admin_user_is_neither_deleted_nor_demoted(gallery: Gallery) -> None:
    ada = add_user(gallery, "ada", PASSWORD, "admin")
    rex = add_user(gallery, "rex", PASSWORD, "recognize")
    for refused in (
        lambda: gallery.delete_user(ada.id),
        lambda: gallery.update_user(ada.id, role="recognize"),
    ):
        with pytest.raises(Conflict, match="'ada' is the last admin user"):
            refused()
    gallery.update_user(ada.id, role="admin")  # not a demotion
    gallery.delete_user(rex.id)  # other users go as before
    grace = gallery.update_user(add_user(gallery, "grace", PASSWORD, "recognize").id, role="admin")
    assert gallery.update_user(ada.id, role="recognize").role == "recognize"  # grace is admin now
    with pytest.raises(Conflict, match="'grace'"):
        gallery.delete_user(grace.id)
    assert [(u.username, u.role) for u in gallery.list_users()] == [("ada", "recognize"), ("grace", "admin")]
    with pytest.raises(NotFound):
        gallery.update_user(10**6, role="admin")


def test_a_new_password_ends_the_user_s_sessions_but_the_one_kept(gallery: Gallery) -> None:
    ada = add_user(gallery, "ada", PASSWORD, "recognize")
    grace = add_user(gallery, "grace", PASSWORD, "admin")
    asking, other = (gallery.start_session(ada.id, timedelta(hours=1)) for _ in range(2))
    graces = gallery.start_session(grace.id, timedelta(hours=1))
    gallery.update_user(ada.id, password_hash="$argon2id$new", keep_session=token_hash(asking.token))
    assert gallery.live_session(asking.token) is not None and gallery.live_session(other.token) is None
    assert gallery.live_session(graces.token) is not None
    found = gallery.credentials("ada")
    assert found is not None and found.password_hash == "$argon2id$new"
    gallery.update_user(ada.id, role="admin")  # a role change ends no session: it is read per request
    live = gallery.live_session(asking.token)
    assert live is not None and live.user.role == "admin"
    gallery.update_user(ada.id, password_hash="$argon2id$newer")
    assert gallery.live_session(asking.token) is None


@pytest.mark.parametrize("change", ["demote", "delete"])
def test_two_admins_removing_each_other_at_once_leave_one(
    gallery: Gallery, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Each change's count of admins is held until its transaction ends. The barrier stops a
    change just after it has counted, for the other to count too: were the rows not locked,
    both would count two admins and both succeed. Locked, the second cannot count until the
    first has committed, so the first waits out the barrier alone and then commits."""
    admins = [add_user(gallery, name, PASSWORD, "admin") for name in ("ada", "grace")]
    counted = Barrier(2, timeout=3)
    keep_an_admin = accounts._keep_an_admin

    def count_then_wait(session: Session, user_id: int, what: str) -> None:
        keep_an_admin(session, user_id, what)
        with contextlib.suppress(BrokenBarrierError):
            counted.wait()

    monkeypatch.setattr(accounts, "_keep_an_admin", count_then_wait)

    def remove(user_id: int) -> str:
        try:
            if change == "demote":
                gallery.update_user(user_id, role="recognize")
            else:
                gallery.delete_user(user_id)
        except Conflict:
            return "refused"
        return "done"

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(remove, [a.id for a in admins]))
    assert sorted(outcomes) == ["done", "refused"]
    assert [u.role for u in gallery.list_users()].count("admin") == 1


def test_registrations_are_counted_per_address_apart_from_failed_logins(gallery: Gallery) -> None:
    window = timedelta(minutes=10)
    for _ in range(2):
        gallery.record_registration("10.0.0.1", window)
    gallery.record_login_failure("ada", "10.0.0.1", window)
    since = utcnow() - window
    assert (
        len(gallery.registrations("10.0.0.1", since)) == 2 and gallery.registrations("10.0.0.2", since) == []
    )
    assert [len(counted) for counted in gallery.login_failures("ada", "10.0.0.1", since)] == [1, 1]
    gallery.forget_login_failures("ada")
    assert len(gallery.registrations("10.0.0.1", since)) == 2
    settings = AuthSettings(login_max_failures_per_address=3, login_window_s=60)
    assert register(gallery, settings, "grace", PASSWORD, "10.0.0.1").role == "recognize"
    with pytest.raises(TooManyAttempts, match="registrations from this address") as refused:
        register(gallery, settings, "grace2", PASSWORD, "10.0.0.1")
    assert 1 <= refused.value.retry_after_s <= 60
    assert register(gallery, settings, "grace2", PASSWORD, "10.0.0.2").username == "grace2"
    assert sign_in(gallery, settings, "grace", PASSWORD, "10.0.0.1")[0].username == "grace"
