"""``facerec users add``: a user straight into the data dir's database, its password from stdin."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.accounts.passwords import verify_password
from orchestrator.cli.main import main
from orchestrator.db import Gallery, default_database_url, make_engine

pytestmark = pytest.mark.unit

PASSWORD = "correct horse battery"


def users_of(data_dir: Path) -> Gallery:
    return Gallery(make_engine(default_database_url(data_dir)))


def test_the_first_admin_is_made_with_the_password_from_stdin_never_argv(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEREC_") and k != "DATABASE_URL"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "users",
            "add",
            "Root",
            "--role",
            "admin",
            "--data-dir",
            str(tmp_path),
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "user root created" in done.stdout and "role admin" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    gallery = users_of(tmp_path)
    try:
        found = gallery.credentials("root")
        assert found is not None and found.user.role == "admin"
        assert verify_password(found.password_hash, PASSWORD)
    finally:
        gallery.engine.dispose()


@pytest.mark.parametrize(
    ("username", "password", "said"),
    [
        ("ada", "short\n", "password"),
        ("ada lovelace", PASSWORD + "\n", "username"),
        ("ada", "", "password"),
    ],
)
def test_a_user_outside_the_rules_is_refused_and_not_made(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    username: str,
    password: str,
    said: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(password))
    assert main(["users", "add", username, "--role", "recognize", "--data-dir", str(tmp_path)]) == 2
    assert f"facerec: {said}:" in capsys.readouterr().err
    if (tmp_path / "facerec.db").exists():
        gallery = users_of(tmp_path)
        try:
            assert gallery.list_users() == []
        finally:
            gallery.engine.dispose()


def test_a_taken_username_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for expected in (0, 2):
        monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
        assert main(["users", "add", "ada", "--role", "recognize", "--data-dir", str(tmp_path)]) == expected
    assert "taken" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("typed", "made"), [([PASSWORD, PASSWORD], True), ([PASSWORD, PASSWORD + "!"], False)]
)
def test_on_a_terminal_the_password_is_prompted_twice(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    typed: list[str],
    made: bool,
) -> None:
    answers = iter(typed)
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    code = main(["users", "add", "ada", "--role", "admin", "--data-dir", str(tmp_path)])
    assert code == (0 if made else 2)
    if not made:
        assert "the two passwords differ" in capsys.readouterr().err
