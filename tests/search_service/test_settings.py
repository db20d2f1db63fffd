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
