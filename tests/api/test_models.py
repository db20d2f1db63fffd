"""GET /v1/models: every arcface version in Triton's repository, loaded or not, and where it came from.

The fake Triton reports arcface 1 READY and 2 UNAVAILABLE; the repository is written by hand
under the test's data dir, where the settings say Triton's repository is.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from orchestrator.modelrepo.records import VersionRecord, add_record
from tests.api.conftest import Api

pytestmark = pytest.mark.unit


def repository(api: Api) -> Path:
    return api.app.state.settings.triton_repository


async def test_without_the_repository_it_lists_what_triton_reports(admin: httpx.AsyncClient) -> None:
    answer = (await admin.get("/v1/models")).json()
    assert answer["active"] == {"name": "arcface", "version": "1"}
    assert answer["versions"] == [
        {"version": "1", "state": "READY", "source": "fetched", "created_at": None, "origin": None},
        {"version": "2", "state": "UNAVAILABLE", "source": "imported", "created_at": None, "origin": None},
    ]


async def test_every_version_on_disk_is_listed_with_its_source(api: Api, admin: httpx.AsyncClient) -> None:
    arcface = repository(api) / "arcface"
    for version in (1, 2, 3, 4, 5):
        (arcface / str(version)).mkdir(parents=True)
    store = repository(api).parent.parent
    (store / "manifest.json").write_text("{}")
    (store / "derived.json").write_text(json.dumps({"rotated": 2}))  # derived before records were kept
    add_record(arcface, 4, VersionRecord.now("derived", origin="int8"))
    imported = VersionRecord(
        source="imported",
        created_at=datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
        origin="ms1mv3_arcface_r18_fp16.pth (arcface_torch r18)",
        normalization="127.5,127.5,rgb",
    )
    add_record(arcface, 5, imported)
    made = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
    os.utime(arcface / "3", (made, made))

    answer = (await admin.get("/v1/models")).json()

    rows = {v["version"]: v for v in answer["versions"]}
    assert list(rows) == ["1", "2", "3", "4", "5"]
    assert {v: r["state"] for v, r in rows.items()} == {
        "1": "READY",
        "2": "UNAVAILABLE",
        "3": "UNAVAILABLE",
        "4": "UNAVAILABLE",
        "5": "UNAVAILABLE",
    }
    assert {v: r["source"] for v, r in rows.items()} == {
        "1": "fetched",
        "2": "derived",
        "3": "imported",
        "4": "derived",
        "5": "imported",
    }
    assert datetime.fromisoformat(rows["3"]["created_at"]) == datetime(2026, 10, 1, tzinfo=UTC)
    assert datetime.fromisoformat(rows["5"]["created_at"]) == imported.created_at
    assert rows["5"]["origin"] == "ms1mv3_arcface_r18_fp16.pth (arcface_torch r18)"
    assert rows["4"]["origin"] == "int8"
    assert all(r["created_at"] for r in rows.values())
