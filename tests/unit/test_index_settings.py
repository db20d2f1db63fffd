"""The index kind as a setting: read from FACEREC_INDEX__*, checked at start, used for new collections."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.clients.search import SearchServiceError
from orchestrator.core.settings import IndexSettings, Settings
from orchestrator.gallery.index_sync import ensure_collection
from search_service.schema import CollectionSpec
from tests.search_service.conftest import sharded_client

pytestmark = pytest.mark.unit


def test_the_defaults_are_the_search_services() -> None:
    assert IndexSettings().spec(512) == CollectionSpec(dim=512)


def test_the_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "KIND": "hnsw",
        "HNSW_M": "48",
        "EF_CONSTRUCTION": "200",
        "EF_SEARCH": "128",
        "NLIST": "1024",
        "NPROBE": "32",
    }.items():
        monkeypatch.setenv(f"FACEREC_INDEX__{name}", value)
    spec = Settings().index.spec(256)
    assert spec == CollectionSpec(
        dim=256, index="hnsw", hnsw_m=48, ef_construction=200, ef_search=128, nlist=1024, nprobe=32
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("KIND", "annoy"), ("EF_SEARCH", "4"), ("HNSW_M", "1000"), ("NLIST", "0"), ("NPROBE", "-1")],
)
def test_a_value_the_service_would_refuse_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"FACEREC_INDEX__{name}", value)
    with pytest.raises(ValidationError, match=f"index.{name.lower()}"):
        Settings()


async def test_a_collection_is_made_as_the_settings_say(tmp_path: Path) -> None:
    async with sharded_client(tmp_path, 2, token=secrets.token_urlsafe(32)) as search:
        await ensure_collection(search, "g", IndexSettings(kind="ivf", nlist=8).spec(16))
        assert (await search.info("g")).index == "ivf"
        await ensure_collection(search, "g", IndexSettings(kind="ivf", nlist=8).spec(16))  # again: fine


async def test_an_existing_collection_keeps_its_kind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with sharded_client(tmp_path, 1, token=secrets.token_urlsafe(32)) as search:
        await ensure_collection(search, "live", CollectionSpec(dim=16))
        await search.add("live", [1], [[1.0] * 16])
        with caplog.at_level(logging.WARNING):
            await ensure_collection(search, "live", IndexSettings(kind="hnsw").spec(16))
        info = await search.info("live")
        assert (info.index, info.count) == ("flat", 1)
        assert "rebuild" in caplog.text and "hnsw" in caplog.text
        with pytest.raises(SearchServiceError) as refused:
            await ensure_collection(search, "live", CollectionSpec(dim=32))
        assert refused.value.status == 409
