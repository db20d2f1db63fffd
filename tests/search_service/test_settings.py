"""Settings, the shard option and the import boundary of the contract modules."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from search_service.settings import SearchSettings, parse_shard
from tests.search_service.conftest import ROOT

pytestmark = pytest.mark.unit


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEREC_SEARCH_SHARD", "2/3")
    monkeypatch.setenv("FACEREC_SEARCH_SNAPSHOT_EVERY_RECORDS", "5")
    settings = SearchSettings()
    assert settings.shard_tuple == (2, 3) and settings.snapshot_every_records == 5


@pytest.mark.parametrize("bad", ["3/3", "1", "a/b", "-1/2", "1/0"])
def test_bad_shard_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_shard(bad)
    with pytest.raises(ValidationError):
        SearchSettings(shard=bad)


def test_contract_modules_do_not_import_faiss() -> None:
    code = (
        "import sys, search_service, search_service.schema, search_service.checksum, "
        "orchestrator.clients.search; assert 'faiss' not in sys.modules, 'faiss imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_token_comes_from_facerec_search_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEREC_SEARCH_TOKEN", "t" * 24)
    token = SearchSettings().token
    assert token is not None and token.get_secret_value() == "t" * 24
    assert "t" * 24 not in repr(SearchSettings())


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "search-0"])
def test_listening_beyond_loopback_needs_a_token(host: str) -> None:
    with pytest.raises(ValidationError, match="FACEREC_SEARCH_TOKEN must be set to listen on"):
        SearchSettings(host=host)
    assert SearchSettings(host=host, token="t" * 24).host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.5"])
def test_loopback_may_run_without_a_token(host: str) -> None:
    assert SearchSettings(host=host).token is None


def test_a_short_token_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError, match="at least 24 characters") as error:
        SearchSettings(token="short-secret-value")
    assert "short-secret-value" not in str(error.value)
