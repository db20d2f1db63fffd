"""Switch the embedder to another version under traffic, with no failed request.

Steps (API.md's states): ``loading`` — Triton loads the new version beside the old;
``reembedding`` — every stored aligned crop is embedded by the new version into a new
search collection while enrolments write to both; ``switching`` — the live (version,
collection) pair changes in one database row, so every orchestrator process flips at its
next request and no request ever mixes the two; ``draining`` — Triton's queue for the old
version empties and a grace period passes; then the old version is unloaded and its
collection dropped. A failure at any step puts the old pair back (``failed``); a finished
rollout can be reversed on request (the original becomes ``rolled_back``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

from orchestrator.clients.search import SearchClient, SearchServiceError
from orchestrator.clients.triton_control import ModelControl
from orchestrator.core.errors import Conflict, InvalidRequest
from orchestrator.core.settings import RolloutSettings
from orchestrator.db.gallery import Gallery
from orchestrator.db.tables import RolloutPublic
from orchestrator.gallery.index_sync import embed_missing, ensure_collection, rebuild
from orchestrator.gallery.live_view import LiveView
from orchestrator.pipeline.face_pipeline import EMBEDDER, FacePipeline
from search_service.checksum import checksum_of_ids

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=5)
"""A rollout not updated for this long was left behind by a process that died."""


def collection_name(version: str) -> str:
    return f"arcface-v{version}-{uuid.uuid4().hex[:8]}"


class RolloutRunner:
    def __init__(
        self,
        gallery: Gallery,
        search: SearchClient,
        pipeline: FacePipeline,
        control: ModelControl,
        dim: int,
        settings: RolloutSettings | None = None,
        live: LiveView | None = None,
    ) -> None:
        self.gallery = gallery
        self.search = search
        self.pipeline = pipeline
        self.control = control
        self.dim = dim
        self.settings = settings or RolloutSettings()
        self.live = live or LiveView(gallery, refresh_s=0.0)
        self._tasks: set[asyncio.Task[None]] = set()

    async def _update(self, rollout_id: int, **values: object) -> RolloutPublic:
        return await asyncio.to_thread(self.gallery.update_rollout, rollout_id, **values)

    async def start(self, to_version: str, reverses: int | None = None) -> RolloutPublic:
        if not to_version.isdigit():
            raise InvalidRequest(f"version must be a number, got {to_version!r}")
        state = await asyncio.to_thread(self.gallery.state)
        if to_version == state.active_model_version:
            raise Conflict(f"version {to_version} is already active")
        record = await asyncio.to_thread(
            self.gallery.start_rollout, state.active_model_version, to_version, collection_name(to_version)
        )
        task = asyncio.create_task(self._run(record, state.active_collection, reverses))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    async def rollback(self, rollout_id: int) -> RolloutPublic:
        """Reverse a finished rollout: the same procedure back to its old version."""
        done = await asyncio.to_thread(self.gallery.get_rollout, rollout_id)
        if done.state != "done":
            raise Conflict(f"rollout {rollout_id} is {done.state}; only a finished one can be rolled back")
        return await self.start(done.from_version, reverses=rollout_id)

    async def wait(self) -> None:
        """For tests and shutdown: until every rollout this process runs has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, record: RolloutPublic, old_collection: str, reverses: int | None) -> None:
        rid, old, new = record.rollout_id, record.from_version, record.to_version
        switched = False
        try:
            await self._update(rid, state="loading")
            await self.control.serve_versions(EMBEDDER, [old, new])
            await ensure_collection(self.search, record.collection, self.dim)
            await asyncio.to_thread(self.gallery.set_pending, new, record.collection)

            await self._update(rid, state="reembedding")
            await self._reembed(rid, new, record.collection)
            await self._verify(new, record.collection)

            await self._update(rid, state="switching")
            with self.live.writing():
                await asyncio.to_thread(self.gallery.set_active, new, record.collection)
                await asyncio.to_thread(self.gallery.bump_generation)
            switched = True
            # Replicas read the live pair at most this long ago: after it none sends to the old one.
            await asyncio.sleep(self.live.refresh_s)

            await self._update(rid, state="draining")
            await self.control.drain(EMBEDDER, old, self.settings.grace_s)
            await self.control.serve_versions(EMBEDDER, [new])
            await self._drop(old_collection)
            await self._update(rid, state="done", progress=1.0)
            if reverses is not None:
                await self._update(reverses, state="rolled_back")
            log.info("rollout %s: version %s → %s done", rid, old, new)
        except Exception as error:
            log.exception("rollout %s to version %s failed; rolling back", rid, new)
            await self._undo(record, old_collection, switched)
            await self._update(rid, state="failed", error=f"{type(error).__name__}: {error}"[:2000])

    async def _reembed(self, rollout_id: int, version: str, collection: str) -> None:
        async def progress(done: int, total: int) -> None:
            await self._update(rollout_id, progress=round(min(done / max(total, 1), 0.99), 4))

        await embed_missing(
            self.gallery,
            self.pipeline,
            version,
            collection=collection,
            search=self.search,
            batch=self.settings.batch,
            progress=progress,
        )

    async def _verify(self, version: str, collection: str) -> None:
        """The new collection must hold exactly the database's faces of ``version``."""
        expected = checksum_of_ids(await asyncio.to_thread(self.gallery.face_ids, version))
        if (await self.search.info(collection)).checksum != expected:
            log.warning("collection %s disagrees with the database; rebuilding it", collection)
            await rebuild(self.gallery, self.search, collection, version, self.dim)

    async def _drop(self, collection: str) -> None:
        try:
            await self.search.drop_collection(collection)
        except SearchServiceError as error:
            log.warning("could not drop collection %s: %s", collection, error)

    async def _undo(self, record: RolloutPublic, old_collection: str, switched: bool) -> None:
        try:
            with self.live.writing():
                if switched:
                    await asyncio.to_thread(self.gallery.set_active, record.from_version, old_collection)
                else:
                    await asyncio.to_thread(self.gallery.set_pending, None, None)
                await asyncio.to_thread(self.gallery.bump_generation)
            if switched:
                await asyncio.sleep(self.live.refresh_s)  # as after the switch: replicas catch up
        except Exception:
            log.exception("rollback of rollout %s: restoring the live pair failed", record.rollout_id)
        try:
            await self.control.serve_versions(EMBEDDER, [record.from_version])
        except Exception:
            log.exception(
                "rollback of rollout %s: unloading version %s failed", record.rollout_id, record.to_version
            )
        await self._drop(record.collection)

    async def recover(self) -> None:
        """At start-up: settle rollouts whose process died (no update for STALE_AFTER)."""
        now = datetime.now(UTC)
        for record in await asyncio.to_thread(self.gallery.unfinished_rollouts):
            if now - record.updated_at < STALE_AFTER:
                continue
            state = await asyncio.to_thread(self.gallery.state)
            if state.active_model_version == record.to_version:
                await self._update(record.rollout_id, state="done", progress=1.0)
                continue
            await self._undo(record, state.active_collection, switched=False)
            await self._update(record.rollout_id, state="failed", error="interrupted: its process stopped")
