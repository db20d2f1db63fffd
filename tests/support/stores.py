"""Private copies of the fetched model store, for tests that add versions to it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from orchestrator.modelrepo.fetch import ModelStore


def linked_copy(store: ModelStore, root: Path) -> ModelStore:
    """A ``cp -al`` of ``store`` at ``root``: nothing added to the copy reaches the original.

    Safe because nothing writes into an existing model file or record: new versions are new
    directories, and records and configs are replaced by rename.
    """
    shutil.copytree(store.root, root, copy_function=os.link, ignore=shutil.ignore_patterns("__pycache__"))
    return ModelStore(root)
