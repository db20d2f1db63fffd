"""Where each arcface version came from: records beside the versions, and what is inferred without one."""

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import onnx
import pytest

from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.modelrepo.importer import add_version, derive, import_file
from orchestrator.modelrepo.records import (
    RECORDS_FILE,
    VersionRecord,
    add_record,
    describe,
    read_records,
)
from orchestrator.modelrepo.repository import MODEL_FILE, TARGETS
from orchestrator.modelrepo.variants import Normalization
from tests.support.stores import linked_copy

pytestmark = pytest.mark.unit


@pytest.fixture
def store(model_store: ModelStore, tmp_path: Path) -> ModelStore:
    return linked_copy(model_store, tmp_path / "models")


def model_dir(root: Path, versions: list[int]) -> Path:
    directory = root / ARCFACE.name
    for version in versions:
        (directory / str(version)).mkdir(parents=True)
    return directory


def test_a_version_without_a_record_is_described_from_its_directory(tmp_path: Path) -> None:
    directory = model_dir(tmp_path, [1, 2, 7])
    made = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC).timestamp()
    os.utime(directory / "7", (made, made))

    described = describe(directory, derived={2})

    assert list(described) == [1, 2, 7]
    assert [r.source for r in described.values()] == ["fetched", "derived", "imported"]
    assert described[7].created_at == datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    assert described[7].origin is None


def test_a_version_is_as_old_as_its_model_file_not_its_python_cache(tmp_path: Path) -> None:
    directory = model_dir(tmp_path, [1])
    made = datetime(2026, 5, 4, tzinfo=UTC).timestamp()
    (directory / "1" / MODEL_FILE).write_bytes(b"onnx")
    os.utime(directory / "1" / MODEL_FILE, (made, made))
    (directory / "1" / "__pycache__").mkdir()  # what Triton's Python backend adds when it loads it
    assert describe(directory)[1].created_at == datetime(2026, 5, 4, tzinfo=UTC)


def test_a_record_wins_and_one_without_its_directory_is_not_a_version(tmp_path: Path) -> None:
    directory = model_dir(tmp_path, [1, 2])
    record = VersionRecord.now("imported", origin="glint360k_cosface_r18_fp16_0.1.pth (arcface_torch r18)")
    add_record(directory, 2, record)
    add_record(directory, 9, VersionRecord.now("derived", origin="int8"))  # a crash before its rename

    described = describe(directory, derived={2})

    assert list(described) == [1, 2]
    assert described[2] == record
    assert read_records(directory)[9].origin == "int8"


def test_a_broken_record_file_costs_the_descriptions_not_the_listing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = model_dir(tmp_path, [1, 3])
    (directory / RECORDS_FILE).write_text('{"3": {"source": "stolen"')
    with caplog.at_level(logging.WARNING, logger="orchestrator.modelrepo.records"):
        described = describe(directory)
    assert [r.source for r in described.values()] == ["fetched", "imported"]
    assert "unreadable" in caplog.text


def test_fields_a_later_release_adds_survive_a_rewrite(tmp_path: Path) -> None:
    directory = model_dir(tmp_path, [1, 2])
    (directory / RECORDS_FILE).write_text(
        json.dumps({"1": {"source": "fetched", "created_at": "2026-01-01T00:00:00Z", "licence": "MIT"}})
    )
    add_record(directory, 2, VersionRecord.now("imported"))
    assert json.loads((directory / RECORDS_FILE).read_text())["1"]["licence"] == "MIT"


def test_the_store_a_repository_lies_in(store: ModelStore, tmp_path: Path) -> None:
    for target in TARGETS:
        assert ModelStore.containing(store.repository(target)) == store
    assert ModelStore.containing(tmp_path / "mounted" / "repository") is None


def test_fetch_imports_and_derives_record_their_source_in_both_targets(
    store: ModelStore, tmp_path: Path
) -> None:
    store.derived.unlink(missing_ok=True)  # a link: the shared store keeps its own
    v1 = onnx.load(str(store.batched / f"{ARCFACE.name}-1.onnx"))
    onnx_file = tmp_path / "w600k_mbf.onnx"
    onnx.save(v1, str(onnx_file))
    before = time.time()

    rotated = derive(store, "rotated")
    imported = import_file(store, onnx_file, Normalization(127.5, 127.5, "bgr"))
    plain = add_version(store, v1, Normalization())

    for target in TARGETS:
        described = describe(store.repository(target) / ARCFACE.name, store.derived_versions())
        assert described[1].source == "fetched"
        assert described[rotated].model_dump(include={"source", "origin"}) == {
            "source": "derived",
            "origin": "rotated",
        }
        record = described[imported]
        assert (record.source, record.origin, record.normalization) == (
            "imported",
            "w600k_mbf.onnx",
            "127.5,127.5,bgr",
        )
        assert record.sha256 is not None and len(record.sha256) == 64
        assert record.created_at.timestamp() >= before - 1
        assert (described[plain].source, described[plain].normalization) == ("imported", None)
