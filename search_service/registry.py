"""The set of collections under ``<data>/collections``: create, open, drop.

A collection directory appears atomically: it is prepared under a hidden name, its
``collection.json`` fsync'ed, then renamed into place. A drop renames it to a hidden
name before deleting it. Hidden leftovers of a crash are removed at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from concurrent.futures import Executor
from pathlib import Path

from search_service.collection import Collection, Limits
from search_service.device import Device, ReplicaDevice
from search_service.errors import Conflict, InvalidInput, NotFound
from search_service.fsutil import fsync_dir
from search_service.persistence import SPEC_FILE, CollectionFiles
from search_service.schema import CollectionSpec

logger = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(f"collection name {name!r} must match {NAME.pattern}", slug="invalid-name")
    return name


class Registry:
    def __init__(self, data_dir: Path, device: Device, pool: Executor, limits: Limits) -> None:
        self.root = data_dir / "collections"
        self.device = device
        self._pool = pool
        self._limits = limits
        self._collections: dict[str, Collection] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._collections)

    def items(self) -> list[tuple[str, Collection]]:
        return list(self._collections.items())

    def _open(self, name: str) -> Collection:
        return Collection(name, self.root / name, self.device, self._pool, self._limits)

    async def open_all(self) -> None:
        """Open every collection on disk (recovering each from snapshot + log)."""

        def scan() -> list[str]:
            self.root.mkdir(parents=True, exist_ok=True)
            names = []
            for path in sorted(self.root.iterdir()):
                if path.name.startswith(".") or not (path / SPEC_FILE).exists():
                    logger.warning("removing incomplete collection directory %s", path)
                    shutil.rmtree(path, ignore_errors=True)
                elif NAME.match(path.name):
                    names.append(path.name)
            fsync_dir(self.root)
            return names

        for name in await asyncio.to_thread(scan):
            self._collections[name] = await asyncio.to_thread(self._open, name)

    def get(self, name: str) -> Collection:
        collection = self._collections.get(name)
        if collection is None:
            raise NotFound(f"collection {name!r} does not exist", slug="unknown-collection")
        return collection

    async def create(self, name: str, spec: CollectionSpec) -> bool:
        """Create ``name``; False if it already exists with the same spec."""
        check_name(name)
        async with self._lock:
            existing = self._collections.get(name)
            if existing is not None:
                if existing.spec == spec:
                    return False
                raise Conflict(
                    f"collection {name!r} exists with a different spec: {existing.spec.model_dump()}",
                    slug="collection-exists",
                )
            beyond = self.device.beyond_limits(spec) if isinstance(self.device, ReplicaDevice) else None
            if beyond is not None:
                raise InvalidInput(f"collection {name!r}: {beyond}", slug="beyond-device-limits")

            def make() -> Collection:
                staging = self.root / f".{name}.creating"
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                CollectionFiles(staging).write_spec(spec)
                staging.rename(self.root / name)
                fsync_dir(self.root)
                return self._open(name)

            self._collections[name] = await asyncio.to_thread(make)
            logger.info("created collection %s (%s)", name, spec.model_dump())
            return True

    async def drop(self, name: str) -> None:
        async with self._lock:
            collection = self.get(name)
            del self._collections[name]
            await collection.close(snapshot=False)

            def remove() -> None:
                doomed = self.root / f".{name}.dropping"
                shutil.rmtree(doomed, ignore_errors=True)
                (self.root / name).rename(doomed)
                fsync_dir(self.root)
                shutil.rmtree(doomed, ignore_errors=True)

            await asyncio.to_thread(remove)
            logger.info("dropped collection %s", name)

    async def close(self) -> None:
        """Snapshot and close every collection (clean shutdown)."""
        async with self._lock:
            for name, collection in list(self._collections.items()):
                try:
                    await collection.close(snapshot=True)
                except Exception:
                    logger.exception("closing collection %s failed", name)
            self._collections.clear()
