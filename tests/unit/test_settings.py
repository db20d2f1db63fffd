"""The orchestrator's settings: secrets long enough, refused without being echoed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.api.in_flight import InFlightShare
from orchestrator.core.settings import MIN_SECRET_CHARS, Settings
from search_service.settings import SearchSettings
from tests.conftest import ROOT

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_facerec_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FACEREC_ADMIN_KEY", "FACEREC_SEARCH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("name", ["FACEREC_ADMIN_KEY", "FACEREC_SEARCH_TOKEN"])
@pytest.mark.parametrize("value", ["", "frk_short", "x" * (MIN_SECRET_CHARS - 1), " " * 30 + "abc"])
def test_a_short_secret_is_refused_without_echoing_it(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=f"{name} must be at least 24 characters") as error:
        Settings()
    if value.strip():
        assert value.strip() not in str(error.value)


def test_secrets_of_24_characters_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEREC_ADMIN_KEY", "k" * MIN_SECRET_CHARS)
    monkeypatch.setenv("FACEREC_SEARCH_TOKEN", "t" * MIN_SECRET_CHARS)
    settings = Settings()
    assert settings.admin_key is not None and settings.admin_key.get_secret_value() == "k" * 24
    assert settings.search_token is not None
    # One variable feeds both sides of the search service's token.
    assert SearchSettings().token == settings.search_token


def test_facerec_refuses_to_start_with_a_short_admin_key(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "orchestrator", "--data-dir", str(tmp_path)],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "FACEREC_ADMIN_KEY": "frk_too-short"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "FACEREC_ADMIN_KEY must be at least 24 characters" in done.stderr
    assert "Traceback" not in done.stderr and "frk_too-short" not in done.stderr + done.stdout
    assert not list(tmp_path.iterdir()), "nothing is started or written"


def test_workers_share_the_limits_which_are_for_them_all() -> None:
    api = Settings(api={"workers": 3, "max_concurrent_images": 64, "pixel_budget_bytes": 3000}).api
    share = api.worker_share()
    assert (share.workers, share.pixel_budget_bytes, share.cpu_workers) == (1, 1000, 2)  # 4 threads, up
    # Counted across the workers (orchestrator/api/in_flight.py), and uvicorn's bound is each one's.
    assert (share.max_concurrent_images, share.limit_concurrency) == (64, 1024)
    single = Settings(api={"workers": 1}).api
    assert single.worker_share() == single


def test_a_worker_gets_its_parents_settings_secrets_included() -> None:
    from orchestrator.cli.api_worker import WORKER_SETTINGS, worker_environment

    settings = Settings(
        port=8123, search_token="t" * MIN_SECRET_CHARS, redis_url="redis://127.0.0.1:7/0", api={"workers": 2}
    )
    share = settings.model_copy(update={"api": settings.api.worker_share()})
    code = (
        "import os, pickle, base64\n"
        "from orchestrator.core.settings import Settings\n"
        f"s, in_flight = pickle.loads(base64.b64decode(os.environ[{WORKER_SETTINGS!r}]))\n"
        "print(s.port, s.redis_url, s.search_token.get_secret_value(), s.api.workers, in_flight.index)\n"
    )
    env = {"PATH": "/usr/bin:/bin", **worker_environment(share, InFlightShare(Path("/x"), 1, 2))}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["8123", "redis://127.0.0.1:7/0", "t" * MIN_SECRET_CHARS, "1", "1"]
