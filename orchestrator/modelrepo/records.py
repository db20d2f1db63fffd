"""Where each embedder version came from: records kept beside the versions themselves.

``<repository>/<model>/versions.json`` maps a version to its record: source (``fetched``,
``imported`` or ``derived``), when it was added and what it was made from. It lives in the
model directory of each repository target rather than in the store because that directory
is what every reader has: an orchestrator sees Triton's repository alone (mounted into its
container), the command line sees the store's targets. Triton ignores it: only numbered
directories are versions.

Fetch writes version 1's record, import and derive the record of the version they add,
each by rename (a reader sees the old file or the new). A version without a record (added
before records were kept, or copied in by hand) is described from what is still visible:
version 1 is the fetched one, a version the store's ``derived.json`` names is derived,
anything else imported; its time is its model file's mtime (not the directory's: Triton's
Python backend writes ``__pycache__`` there when it loads the version).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.modelrepo.repository import MODEL_FILE, replace_file, version_dirs

log = logging.getLogger(__name__)

RECORDS_FILE = "versions.json"
FETCHED_VERSION = 1

Source = Literal["fetched", "imported", "derived"]


class VersionRecord(BaseModel):
    """One version's provenance, as ``versions.json`` keeps it."""

    # Fields a later release adds survive a rewrite by this one.
    model_config = ConfigDict(extra="allow", frozen=True)

    source: Source
    created_at: datetime
    origin: str | None = None
    """What it was made from: the package and file, the derived kind, the imported file's name."""
    sha256: str | None = None
    """Of the imported file."""
    normalization: str | None = None
    """The imported model's own input normalisation, ``MEAN,STD,rgb|bgr``, prepended to its graph."""

    @classmethod
    def now(cls, source: Source, **details: str | None) -> VersionRecord:
        return cls(source=source, created_at=datetime.now(UTC), **details)


def inferred_source(version: int, derived: Collection[int] = ()) -> Source:
    """The source of a version that has no record."""
    if version == FETCHED_VERSION:
        return "fetched"
    return "derived" if version in derived else "imported"


def read_records(model_dir: Path) -> dict[int, VersionRecord]:
    """The records in ``model_dir``, by version; none when the file is missing or unreadable.

    A broken file costs the descriptions, never the listing: it is logged and ignored.
    """
    path = model_dir / RECORDS_FILE
    try:
        raw = json.loads(path.read_text())
        return {int(version): VersionRecord.model_validate(record) for version, record in raw.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError, ValidationError) as error:
        log.warning("%s is unreadable (%s); its versions are described from the directory", path, error)
        return {}


def write_records(model_dir: Path, records: Mapping[int, VersionRecord]) -> None:
    """Replace ``model_dir``'s records with ``records``, atomically."""
    body = {str(v): records[v].model_dump(mode="json", exclude_none=True) for v in sorted(records)}
    replace_file(model_dir / RECORDS_FILE, json.dumps(body, indent=2) + "\n")


def add_record(model_dir: Path, version: int, record: VersionRecord) -> None:
    """Record ``version`` in ``model_dir``, keeping the other versions' records."""
    records = read_records(model_dir)
    records[version] = record
    write_records(model_dir, records)


def describe(model_dir: Path, derived: Collection[int] = ()) -> dict[int, VersionRecord]:
    """Every version directory of ``model_dir`` with its record, or one inferred; ascending.

    ``derived``: the versions the enclosing store's ``derived.json`` names, for versions
    derived before records were kept.
    """
    if not model_dir.is_dir():
        return {}
    records = read_records(model_dir)
    described: dict[int, VersionRecord] = {}
    for version in version_dirs(model_dir):
        record = records.get(version)
        if record is None:
            record = VersionRecord(
                source=inferred_source(version, derived), created_at=_made_at(model_dir / str(version))
            )
        described[version] = record
    return described


def _made_at(version_dir: Path) -> datetime:
    model = version_dir / MODEL_FILE
    stat = (model if model.is_file() else version_dir).stat()
    return datetime.fromtimestamp(stat.st_mtime, UTC)
