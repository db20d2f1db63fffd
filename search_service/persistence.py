"""On-disk layout of one collection and its atomic snapshot files.

``<data>/collections/<name>/``:

* ``collection.json``: the :class:`CollectionSpec` (written once, atomically);
* ``snapshot-<S>.faiss``: ``faiss.write_index`` of the index holding every write of
  the log segments before ``S`` (temp file + fsync + rename + fsync of the directory);
* ``log-<S>.wal``: the writes since that snapshot (:mod:`search_service.wal`).

Start-up loads the highest complete snapshot ``S`` (or an empty index if none) and
replays ``log-<M>`` for every ``M >= S`` in order; older files are leftovers of a
snapshot interrupted after its rename and are removed.
"""

from __future__ import annotations

import re
from pathlib import Path

import faiss

from search_service.fsutil import atomic_write, atomic_write_bytes, fsync_dir
from search_service.schema import CollectionSpec

SPEC_FILE = "collection.json"
_SNAPSHOT = re.compile(r"^snapshot-(\d{8})\.faiss$")
_LOG = re.compile(r"^log-(\d{8})\.wal$")


class CollectionFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def read_spec(self) -> CollectionSpec:
        return CollectionSpec.model_validate_json((self.directory / SPEC_FILE).read_bytes())

    def write_spec(self, spec: CollectionSpec) -> None:
        atomic_write_bytes(self.directory / SPEC_FILE, spec.model_dump_json().encode())

    def snapshot_path(self, seq: int) -> Path:
        return self.directory / f"snapshot-{seq:08d}.faiss"

    def log_path(self, seq: int) -> Path:
        return self.directory / f"log-{seq:08d}.wal"

    def _numbered(self, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.iterdir():
            match = pattern.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest_snapshot(self) -> tuple[int, Path | None]:
        snapshots = self._numbered(_SNAPSHOT)
        return snapshots[-1] if snapshots else (0, None)

    def logs_from(self, seq: int) -> list[tuple[int, Path]]:
        return [(n, p) for n, p in self._numbered(_LOG) if n >= seq]

    def write_snapshot(self, index: faiss.Index, seq: int) -> None:
        atomic_write(self.snapshot_path(seq), lambda tmp: faiss.write_index(index, str(tmp)))

    def read_snapshot(self, path: Path) -> faiss.Index:
        return faiss.read_index(str(path))

    def remove_older_than(self, seq: int) -> None:
        """Drop snapshots and logs superseded by snapshot ``seq``, and stray temp files."""
        removed = False
        for pattern in (_SNAPSHOT, _LOG):
            for n, path in self._numbered(pattern):
                if n < seq:
                    path.unlink(missing_ok=True)
                    removed = True
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
            removed = True
        if removed:
            fsync_dir(self.directory)
