"""API keys: hashed at rest, revocable, and exactly one first admin."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
from sqlalchemy import select

from orchestrator.core.errors import Conflict, InvalidRequest, NotFound
from orchestrator.db import Gallery, make_engine
from orchestrator.db.tables import metadata


def stored_text(gallery: Gallery) -> str:
    """Every value of every api_key row, as text: where a leaked key would show."""
    with gallery.engine.connect() as connection:
        return " ".join(
            str(value) for row in connection.execute(select(metadata.tables["api_key"])) for value in row
        )


def test_key_is_stored_hashed_only(gallery: Gallery) -> None:
    public, plaintext = gallery.create_key("ci", "recognize")
    assert plaintext.startswith("frk_") and len(plaintext) > 40
    assert (public.name, public.role, public.prefix, public.revoked) == (
        "ci",
        "recognize",
        plaintext[:8],
        False,
    )
    text = stored_text(gallery)
    assert plaintext not in text and plaintext[8:] not in text
    assert hashlib.sha256(plaintext.encode()).hexdigest() in text
    assert gallery.list_keys() == [public]


def test_authenticate_and_last_used(gallery: Gallery) -> None:
    public, plaintext = gallery.create_key("app", "admin")
    assert public.last_used_at is None
    first = gallery.authenticate(plaintext)
    assert first is not None and first.id == public.id and first.last_used_at is not None
    # Within the minute the stamp is not rewritten: no write per request.
    again = gallery.authenticate(plaintext)
    assert again is not None and again.last_used_at == first.last_used_at
    assert gallery.list_keys()[0].last_used_at == first.last_used_at
    assert gallery.authenticate(plaintext + "x") is None
    assert gallery.authenticate("") is None


def test_revoked_key_fails(gallery: Gallery) -> None:
    public, plaintext = gallery.create_key("leaked", "recognize")
    _, other = gallery.create_key("fine", "recognize")
    revoked = gallery.revoke_key(public.id)
    assert revoked.revoked
    assert gallery.revoke_key(public.id).revoked  # idempotent
    assert gallery.authenticate(plaintext) is None
    assert gallery.authenticate(other) is not None
    assert [key.revoked for key in gallery.list_keys()] == [True, False]
    with pytest.raises(NotFound):
        gallery.revoke_key(public.id + 1000)


def test_the_last_admin_key_cannot_be_revoked(gallery: Gallery) -> None:
    first, first_plaintext = gallery.create_key("first admin", "admin")
    gallery.create_key("a recognize key", "recognize")
    with pytest.raises(Conflict, match="last admin key"):
        gallery.revoke_key(first.id)
    assert gallery.authenticate(first_plaintext) is not None  # refused, so nothing changed
    second, _ = gallery.create_key("second admin", "admin")
    assert gallery.revoke_key(first.id).revoked  # another admin remains
    with pytest.raises(Conflict):
        gallery.revoke_key(second.id)


def test_two_admins_revoking_each_other_at_once_keep_one(gallery: Gallery, database_url: str) -> None:
    admins = [gallery.create_key(f"admin {i}", "admin")[0].id for i in range(2)]
    barrier = Barrier(len(admins))

    def revoke(key_id: int) -> str:
        engine = make_engine(database_url)
        try:
            own = Gallery(engine)
            barrier.wait()
            own.revoke_key(key_id)
            return "revoked"
        except Conflict:
            return "refused"
        finally:
            engine.dispose()

    with ThreadPoolExecutor(len(admins)) as pool:
        outcomes = sorted(pool.map(revoke, admins))
    assert outcomes == ["refused", "revoked"]
    assert sum(not key.revoked for key in gallery.list_keys() if key.role == "admin") == 1


def test_create_key_validates(gallery: Gallery) -> None:
    with pytest.raises(InvalidRequest):
        gallery.create_key("x", "root")
    with pytest.raises(InvalidRequest):
        gallery.create_key("  ", "admin")
    assert gallery.list_keys() == []


def test_first_admin_generated_once(gallery: Gallery) -> None:
    plaintext = gallery.ensure_first_admin(None)
    assert plaintext is not None and plaintext.startswith("frk_")
    key = gallery.authenticate(plaintext)
    assert key is not None and key.role == "admin"
    assert gallery.ensure_first_admin(None) is None
    assert gallery.ensure_first_admin("another-admin-key-0123") is None
    assert len(gallery.list_keys()) == 1


def test_first_admin_honours_facerec_admin_key(gallery: Gallery) -> None:
    chosen = "operator-chosen-admin-key-42"
    assert gallery.ensure_first_admin(chosen) == chosen
    key = gallery.authenticate(chosen)
    assert key is not None and key.role == "admin"
    assert chosen not in stored_text(gallery)


def test_no_first_admin_when_keys_exist(gallery: Gallery) -> None:
    gallery.create_key("made by hand", "recognize")
    assert gallery.ensure_first_admin("operator-chosen-admin-key-42") is None
    assert [key.role for key in gallery.list_keys()] == ["recognize"]


@pytest.mark.parametrize("admin_key", [None, "same-key-in-both-processes"])
def test_two_starts_at_once_make_one_admin(
    gallery: Gallery, database_url: str, admin_key: str | None
) -> None:
    starters = 2
    barrier = Barrier(starters)

    def start() -> str | None:
        engine = make_engine(database_url)
        try:
            own = Gallery(engine)
            barrier.wait()
            return own.ensure_first_admin(admin_key)
        finally:
            engine.dispose()

    with ThreadPoolExecutor(starters) as pool:
        shown = list(pool.map(lambda _: start(), range(starters)))
    assert sum(plaintext is not None for plaintext in shown) == 1
    assert len(gallery.list_keys()) == 1
