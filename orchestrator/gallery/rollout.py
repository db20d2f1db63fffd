"""Switch the embedder to another version under traffic, with no failed request.

Steps (API.md's states): ``loading`` — the version policy on disk and every Triton serve
the new version beside the old; ``reembedding`` — every stored aligned crop is embedded by
the new version into a new search collection while enrolments write to both, then the
collection is made to agree with the database and every face's impostor and genuine scores
are computed for the new version (``gallery/score_keeper.py``), so its calibrated threshold
switches with it; ``switching`` — the live (version,
collection) pair changes in one database row, so every orchestrator process flips at its
next request and no request ever mixes the two; ``draining`` — Triton's queue for the old
version empties and a grace period passes; the new collection is checked against the
database once more (an enrolment that began before the switch may commit after it), then
the old version is unloaded and its collection dropped. A failure before that puts the old
pair back (``failed``); a finished rollout can be reversed on request (the original
becomes ``rolled_back``). The scores of the version that is no longer live, the old one once
done or the new one once undone, are dropped. A ``rebuild`` is the same procedure for the
live version into a new collection: how a collection that disagrees with the database is
repaired under traffic; the version's scores stay as they are, since its embeddings do.

Each rollout is owned through a lease (see :mod:`orchestrator.db.rollouts`): any replica
carries on one whose owner died, from the step its database state shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from orchestrator.clients.search import SearchServiceError
from orchestrator.clients.search_backend import SearchBackend
from orchestrator.clients.triton_control import ModelControl
from orchestrator.core.errors import Conflict, InvalidRequest
from orchestrator.core.settings import IndexSettings, MatchSettings, RolloutSettings
from orchestrator.db.gallery import Gallery
from orchestrator.db.rollouts import LeaseLost
from orchestrator.db.tables import RolloutKind, RolloutPublic
from orchestrator.gallery.index_sync import (
    Reconciliation,
    embed_missing,
    ensure_collection,
    reconcile,
    repair_in_place,
)
from orchestrator.gallery.live_view import LiveView
from orchestrator.gallery.score_keeper import ScoreKeeper
from orchestrator.modelrepo.repository import write_version_policy
from orchestrator.pipeline.face_pipeline import EMBEDDER, FacePipeline

log = logging.getLogger(__name__)


def collection_name(version: str) -> str:
    return f"arcface-v{version}-{uuid.uuid4().hex[:8]}"


def process_name() -> str:
    """Who owns a lease: unique per process, readable in the rollout record."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class RolloutRunner:
    def __init__(
        self,
        gallery: Gallery,
        search: SearchBackend,
        pipeline: FacePipeline,
        control: ModelControl,
        dim: int,
        settings: RolloutSettings | None = None,
        live: LiveView | None = None,
        repository: Path | None = None,
        *,
        index: IndexSettings | None = None,
        scores: ScoreKeeper | None = None,
    ) -> None:
        self.gallery = gallery
        self.search = search
        self.pipeline = pipeline
        self.control = control
        self.dim = dim
        self.settings = settings or RolloutSettings()
        self.live = live or LiveView(gallery, refresh_s=0.0)
        self.repository = repository
        """Triton's model repository as seen here; None: Triton's disk is not ours to write."""
        self.spec = (index or IndexSettings()).spec(dim)
        """What every collection made here is (a rollout's, a rebuild's, a missing live one)."""
        self.scores = scores or ScoreKeeper(gallery, search, MatchSettings().neighbours)
        """Scores the new version's faces before it switches (its threshold switches with it)."""
        self.owner = process_name()
        self._tasks: dict[int, asyncio.Task[None]] = {}

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_s)

    async def start(self, to_version: str, reverses: int | None = None) -> RolloutPublic:
        if not to_version.isdigit():
            raise InvalidRequest(f"version must be a number, got {to_version!r}")
        state = await asyncio.to_thread(self.gallery.state)
        if to_version == state.active_model_version:
            raise Conflict(f"version {to_version} is already active")
        return await self._begin(
            "rollout", state.active_model_version, to_version, state.active_collection, reverses
        )

    async def rebuild(self) -> RolloutPublic:
        """The live version into a new collection from the database, switched to atomically."""
        state = await asyncio.to_thread(self.gallery.state)
        version = state.active_model_version
        return await self._begin("rebuild", version, version, state.active_collection, None)

    async def reconcile(self) -> Reconciliation:
        """At start: check the live collection; if it disagrees with the database, rebuild it.

        The rebuild goes into a new collection switched to atomically, so traffic on other
        replicas keeps its answers; starting it takes the rollout lock, so of replicas that
        start together one rebuilds and the others go on (that rebuild ends checked).
        """
        found = await reconcile(self.gallery, self.search, self.pipeline, self.spec)
        if not found.disagreeing:
            return found
        log.warning(
            "collection %s disagrees with the database on %d faces (index %s, database %s): rebuilding it",
            found.collection,
            found.disagreeing,
            found.index_checksum,
            found.database_checksum,
        )
        try:
            record = await self.rebuild()
        except Conflict as busy:
            log.warning("not rebuilding here: %s", busy)
            return found
        await self.finished(record.rollout_id)
        after = await reconcile(self.gallery, self.search, self.pipeline, self.spec)
        return replace(after, rebuilt=True)

    async def rollback(self, rollout_id: int) -> RolloutPublic:
        """Reverse a finished rollout: the same procedure back to its old version."""
        done = await asyncio.to_thread(self.gallery.get_rollout, rollout_id)
        if done.state != "done" or done.kind != "rollout":
            raise Conflict(f"rollout {rollout_id} is {done.state}; only a finished one can be rolled back")
        return await self.start(done.from_version, reverses=rollout_id)

    async def _begin(
        self, kind: RolloutKind, old: str, new: str, old_collection: str, reverses: int | None
    ) -> RolloutPublic:
        record = await asyncio.to_thread(
            lambda: self.gallery.start_rollout(
                old,
                new,
                collection_name(new),
                from_collection=old_collection,
                kind=kind,
                reverses=reverses,
                owner=self.owner,
                lease=self.lease,
            )
        )
        self._launch(record)
        return record

    def _launch(self, record: RolloutPublic) -> None:
        task = asyncio.create_task(self._own(record), name=f"rollout-{record.rollout_id}")
        self._tasks[record.rollout_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(record.rollout_id, None))

    async def finished(self, rollout_id: int) -> None:
        """Until this process's run of that rollout ends (at once if it runs elsewhere)."""
        task = self._tasks.get(rollout_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def wait(self) -> None:
        """For tests: until every rollout this process runs has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def watch(self) -> None:
        """Forever: take over any rollout whose owner stopped renewing its lease."""
        while True:
            try:
                record = await asyncio.to_thread(self.gallery.claim_expired_rollout, self.owner, self.lease)
                if record is not None:
                    log.warning(
                        "rollout %s (%s → %s, %s) had no live owner: %s carries it on",
                        record.rollout_id,
                        record.from_version,
                        record.to_version,
                        record.state,
                        self.owner,
                    )
                    self._launch(record)
            except Exception:
                log.exception("checking for abandoned rollouts failed; trying again")
            await asyncio.sleep(self.settings.lease_s / 3)

    async def close(self) -> None:
        """Stop running rollouts at once and let their leases lapse, for another replica."""
        running = dict(self._tasks)
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        for rollout_id in running:
            try:
                await asyncio.to_thread(self.gallery.release_lease, rollout_id, self.owner)
            except Exception:
                log.exception("could not release the lease of rollout %s", rollout_id)

    async def _own(self, record: RolloutPublic) -> None:
        """Run ``record`` while renewing its lease; stop if the lease is lost."""
        run = asyncio.create_task(self._run(record))

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.settings.lease_s / 3)
                try:
                    await asyncio.to_thread(
                        self.gallery.renew_lease, record.rollout_id, self.owner, self.lease
                    )
                except LeaseLost:
                    log.error("rollout %s: lease lost; stopping here", record.rollout_id)
                    run.cancel()
                    return
                except Exception:
                    log.exception("rollout %s: renewing the lease failed", record.rollout_id)

        heartbeat = asyncio.create_task(renew())
        try:
            await run
        except asyncio.CancelledError:
            if not run.cancelled():
                raise
        finally:
            heartbeat.cancel()

    async def _update(self, rollout_id: int, **values: object) -> RolloutPublic:
        return await asyncio.to_thread(
            lambda: self.gallery.update_rollout(rollout_id, owner=self.owner, **values)
        )

    async def _run(self, record: RolloutPublic) -> None:
        rid, old, new = record.rollout_id, record.from_version, record.to_version
        state = await asyncio.to_thread(self.gallery.state)
        switched = state.active_collection == record.collection
        try:
            if not switched:
                await self._update(rid, state="loading")
                if old != new:  # a rebuild keeps the version: no reload of a serving model
                    await self._serve([old, new])
                await ensure_collection(self.search, record.collection, self.spec)
                with self.live.writing():
                    await asyncio.to_thread(self.gallery.set_pending, new, record.collection)

                await self._update(rid, state="reembedding")
                await self._fill(rid, new, record.collection)
                if old != new:  # a rebuild keeps the version, and with it the scores
                    await self.scores.recompute(record.collection, new)

                await self._update(rid, state="switching")
                with self.live.writing():
                    await asyncio.to_thread(self.gallery.set_active, new, record.collection)
                    await asyncio.to_thread(self.gallery.bump_generation)
                switched = True
            # Replicas read the live pair at most this long ago: after it none sends to the old one.
            await asyncio.sleep(self.live.refresh_s)
            await self._agree(new, record.collection)

            await self._update(rid, state="draining")
            if old != new:
                await self.control.drain(EMBEDDER, old, self.settings.grace_s)
            else:
                await asyncio.sleep(self.settings.grace_s)
            await self._agree(new, record.collection)
            if old != new:
                await self._serve([new])
        except LeaseLost:
            log.error("rollout %s: another process took it over; this one stops", rid)
            return
        except Exception as error:
            log.exception("rollout %s to version %s failed; rolling back", rid, new)
            await self._undo(record, switched)
            with contextlib.suppress(LeaseLost):
                await self._update(rid, state="failed", error=f"{type(error).__name__}: {error}"[:2000])
            return
        # Past the point of return: the new pair is live and complete; only clean-up is left.
        await self._drop(record.from_collection)
        if old != new:  # no longer kept up to date; a rollout back recomputes them
            await self._drop_scores(old)
        with contextlib.suppress(LeaseLost):
            await self._update(rid, state="done", progress=1.0)
            if record.reverses is not None:
                await asyncio.to_thread(self.gallery.update_rollout, record.reverses, state="rolled_back")
            log.info("rollout %s (%s): version %s → %s done", rid, record.kind, old, new)

    async def _serve(self, versions: list[str]) -> None:
        """Make ``versions`` live on disk, then in every Triton: a restarted Triton loads them too."""
        versions = sorted(set(versions), key=int)
        if self.repository is not None:
            model_dir = self.repository / EMBEDDER
            if (model_dir / "config.pbtxt").is_file():
                await asyncio.to_thread(write_version_policy, model_dir, versions)
            else:
                log.warning(
                    "no %s in %s: the version policy on disk is left as it is", EMBEDDER, self.repository
                )
        await self.control.serve_versions(EMBEDDER, versions)

    async def _fill(self, rollout_id: int, version: str, collection: str) -> None:
        """Every stored face into ``collection``: crops embedded where needed, the rest from the database."""

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
        await self._agree(version, collection)

    async def _agree(self, version: str, collection: str) -> None:
        """Make ``collection`` hold exactly the database's faces, without ever emptying it."""
        embedded = await embed_missing(
            self.gallery,
            self.pipeline,
            version,
            collection=collection,
            search=self.search,
            batch=self.settings.batch,
        )
        repair = await repair_in_place(self.gallery, self.search, collection, version)
        if embedded or repair.added or repair.removed:
            log.warning(
                "collection %s: %d faces embedded late, %d added, %d removed to agree with the database",
                collection,
                embedded,
                repair.added,
                repair.removed,
            )

    async def _drop(self, collection: str) -> None:
        try:
            await self.search.drop_collection(collection, missing_ok=True)
        except SearchServiceError as error:
            log.warning("could not drop collection %s: %s", collection, error)

    async def _drop_scores(self, version: str) -> None:
        try:
            await asyncio.to_thread(self.gallery.drop_face_scores, version)
        except Exception:
            log.exception("could not drop the scores of version %s", version)

    async def _undo(self, record: RolloutPublic, switched: bool) -> None:
        old = record.from_version
        try:
            with self.live.writing():
                if switched:
                    await asyncio.to_thread(self.gallery.set_active, old, record.from_collection)
                else:
                    await asyncio.to_thread(self.gallery.set_pending, None, None)
                await asyncio.to_thread(self.gallery.bump_generation)
            if switched:
                await asyncio.sleep(self.live.refresh_s)  # as after the switch: replicas catch up
            # Faces enrolled meanwhile were written to the old pair too; check that none is missing.
            await self._agree(old, record.from_collection)
            if switched and old != record.to_version:
                # Faces enrolled since the switch were scored under the new version only.
                await self.scores.recompute(record.from_collection, old)
        except Exception:
            log.exception("rollback of rollout %s: restoring the live pair failed", record.rollout_id)
        try:
            if old != record.to_version:
                await self._serve([old])
        except Exception:
            log.exception(
                "rollback of rollout %s: unloading version %s failed", record.rollout_id, record.to_version
            )
        await self._drop(record.collection)
        if old != record.to_version:
            await self._drop_scores(record.to_version)
