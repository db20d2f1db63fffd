"""The milvus backend's pure parts: names, index kinds and their memory, its settings."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.cli.serve import _serve
from orchestrator.clients.milvus_index import (
    facerec_name,
    index_bytes,
    index_params,
    milvus_name,
    properties,
    search_params,
    spec_of,
)
from orchestrator.core.settings import Settings
from search_service.schema import CollectionSpec

pytestmark = pytest.mark.unit

NAMES = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,60}\Z")
MILVUS_CHARS = set(string.ascii_letters + string.digits + "_")


@given(NAMES)
def test_every_collection_name_has_a_milvus_name_and_back(name: str) -> None:
    stored = milvus_name(name)
    assert set(stored) <= MILVUS_CHARS and stored[0].isalpha() and len(stored) <= 255
    assert facerec_name(stored) == name


def test_other_collections_are_not_ours() -> None:
    assert facerec_name("products") is None and facerec_name("facerec_a_x") is None
    with pytest.raises(ValueError):
        milvus_name("-leading")


def test_the_spec_travels_in_a_property() -> None:
    spec = CollectionSpec(dim=512, index="hnsw", hnsw_m=16)
    assert spec_of({"properties": properties(spec)}) == spec
    assert spec_of({"properties": {}}) is None


def test_each_kind_maps_to_a_milvus_index() -> None:
    spec = CollectionSpec(dim=512, nlist=1024, nprobe=4096, hnsw_m=24, ef_construction=100, ef_search=16)
    kinds = {kind: spec.model_copy(update={"index": kind}) for kind in ("flat", "ivf", "hnsw")}
    assert index_params(kinds["flat"]) == {"index_type": "FLAT", "params": {}}
    assert index_params(kinds["ivf"]) == {"index_type": "IVF_FLAT", "params": {"nlist": 1024}}
    assert index_params(kinds["hnsw"]) == {"index_type": "HNSW", "params": {"M": 24, "efConstruction": 100}}
    assert [index_params(s, gpu=True)["index_type"] for s in kinds.values()] == [
        "GPU_BRUTE_FORCE",
        "GPU_IVF_FLAT",
        "GPU_CAGRA",
    ]
    assert index_params(kinds["hnsw"], gpu=True)["params"] == {
        "graph_degree": 48,
        "intermediate_graph_degree": 96,
    }
    # Milvus refuses nprobe > nlist, and an ef or itopk_size below k.
    assert search_params(kinds["ivf"], 10)["params"] == {"nprobe": 1024}
    assert search_params(kinds["hnsw"], 50)["params"] == {"ef": 50}
    assert search_params(kinds["hnsw"], 50, gpu=True)["params"] == {"itopk_size": 64}
    assert all(search_params(s, 5)["metric_type"] == "IP" for s in kinds.values())


def test_memory_per_million_faces() -> None:
    million = 1_000_000
    assert index_bytes("flat", million, 512) == 2_056_000_000  # 2 KiB vector + 8 B id each
    assert index_bytes("hnsw", million, 512, hnsw_m=32) == 2_056_000_000 + 256_000_000
    assert index_bytes("ivf", million, 512, nlist=4096) == 2_056_000_000 + 4096 * 2048


def test_the_backend_settings_and_their_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEREC_DATA_DIR", str(tmp_path))
    assert Settings().search.backend == "faiss"
    monkeypatch.setenv("FACEREC_SEARCH__BACKEND", "milvus")
    monkeypatch.setenv("FACEREC_SEARCH_TOKEN", "t" * 30)
    settings = Settings()
    assert settings.milvus_uri == str(tmp_path / "milvus.db") and settings.milvus_token == "t" * 30
    monkeypatch.setenv("FACEREC_SEARCH__MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("FACEREC_SEARCH__MILVUS_TOKEN", "root:Milvus")
    settings = Settings()
    assert (settings.milvus_uri, settings.milvus_token) == ("http://milvus:19530", "root:Milvus")
    monkeypatch.setenv("FACEREC_SEARCH__BACKEND", "qdrant")
    with pytest.raises(ValueError):
        Settings()


def test_a_lite_file_refuses_several_api_workers(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.search.backend = "milvus"
    settings.api.workers = 2
    with pytest.raises(SystemExit, match="FACEREC_API__WORKERS=1"):
        _serve(settings)
