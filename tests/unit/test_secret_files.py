"""Secrets in the data dir: owner-only from creation, never in the log stream."""

from __future__ import annotations

import io
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.core.secret_files import (
    FIRST_ADMIN_KEY_FILE,
    hand_over_first_admin_key,
    read_or_create_token,
    write_private,
)
from orchestrator.db.keys import new_key

pytestmark = pytest.mark.unit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that would leave a file created with the default mode world-readable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("permissive_umask")
def test_a_private_file_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    path = write_private(tmp_path / "secret", "s3cret\n")
    assert mode(path) == 0o600 and path.read_text() == "s3cret\n"


def test_a_private_file_is_readable_by_its_owner_under_a_strict_umask(tmp_path: Path) -> None:
    old = os.umask(0o777)
    try:
        path = write_private(tmp_path / "secret", "s3cret\n")
    finally:
        os.umask(old)
    assert mode(path) == 0o600 and path.read_text() == "s3cret\n"


def test_a_private_file_is_never_written_over_or_through_a_link(tmp_path: Path) -> None:
    existing = tmp_path / "secret"
    existing.write_text("theirs")
    with pytest.raises(FileExistsError):
        write_private(existing, "ours")
    assert existing.read_text() == "theirs"
    target = tmp_path / "elsewhere"
    (tmp_path / "planted").symlink_to(target)
    with pytest.raises(FileExistsError):
        write_private(tmp_path / "planted", "ours")
    assert not target.exists()


def test_a_token_is_made_once_per_data_dir(tmp_path: Path) -> None:
    path = tmp_path / "search-token"
    token = read_or_create_token(path)
    assert len(token) >= 40 and mode(path) == 0o600
    assert read_or_create_token(path) == token
    assert read_or_create_token(tmp_path / "other") != token


def test_a_token_file_cut_short_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "search-token"
    path.write_text("")
    token = read_or_create_token(path)
    assert len(token) >= 40 and mode(path) == 0o600


@pytest.mark.usefixtures("permissive_umask")
def test_the_first_admin_key_goes_to_a_file_not_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    key = new_key()
    caplog.set_level(logging.DEBUG)
    path = hand_over_first_admin_key(tmp_path, key)
    assert path == tmp_path / FIRST_ADMIN_KEY_FILE
    assert mode(path) == 0o600 and path.read_text() == key + "\n"
    captured = capsys.readouterr()
    assert key not in caplog.text and key not in captured.err and key not in captured.out
    assert str(path) in caplog.text and "readable by its owner only" in caplog.text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_person_at_a_terminal_also_sees_the_key_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    key = new_key()
    hand_over_first_admin_key(tmp_path, key)
    assert terminal.getvalue().count(key) == 1
    assert key not in caplog.text


def test_a_key_file_left_by_an_earlier_database_is_replaced(tmp_path: Path) -> None:
    stale = tmp_path / FIRST_ADMIN_KEY_FILE
    stale.write_text("frk_dead\n")
    stale.chmod(0o644)
    key = new_key()
    path = hand_over_first_admin_key(tmp_path, key)
    assert path.read_text() == key + "\n" and mode(path) == 0o600
