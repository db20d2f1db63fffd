"""What every recognition reads, kept in memory: the live state, face owners and API keys.

Read from the database on every request these cost more CPU than the HTTP work. Each view
is at most ``refresh_s`` old; writes through this process clear it at once, so one
replica sees its own writes immediately and other replicas within ``refresh_s``. The
rollout runner waits ``refresh_s`` after a switch before draining the old version, so no
replica still sends to it.

Face owners (the person each face belongs to, with the public fields a match carries)
are remembered per gallery generation: deletes and every change of a person bump the
generation in their own transaction, so once the state shows the new generation every
owner remembered from before is forgotten.

The calibration of each live model version (its impostor and genuine scores, the threshold in
force) is read again once the generation has changed, at most every ``recalibrate_s``: the
first request for a version waits for the read, later ones are answered with the calibration
at hand while a background task reads the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from orchestrator.core.settings import MatchSettings
from orchestrator.db.gallery import Gallery
from orchestrator.db.keys import hash_key, used_long_ago
from orchestrator.db.tables import ApiKeyPublic, GalleryStatePublic, PersonSummary
from orchestrator.db.types import utcnow
from orchestrator.gallery.calibration import GalleryCalibration, calibrate_gallery
from orchestrator.pipeline.calibration import DEFAULT_MATCH_THRESHOLD

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Calibrated:
    calibration: GalleryCalibration
    generation: int
    """The generation seen before its scores were read: a later one may have changed them."""
    at: float
    """``time.monotonic()`` when it was read (or last failed to be read again)."""


class LiveView:
    def __init__(
        self,
        gallery: Gallery,
        refresh_s: float,
        match: MatchSettings | None = None,
        shipped_threshold: float = DEFAULT_MATCH_THRESHOLD,
    ) -> None:
        self.gallery = gallery
        self.refresh_s = refresh_s
        self.match = match or MatchSettings()
        self.shipped_threshold = shipped_threshold
        self._calibrations: dict[str, _Calibrated] = {}
        """The live versions' calibrations (active, pending); others are read on each ask."""
        self._calibration_lock = asyncio.Lock()
        self._recalibrating: dict[str, asyncio.Task[None]] = {}
        self._state: GalleryStatePublic | None = None
        self._state_read_at = 0.0
        self._state_lock = asyncio.Lock()
        self._owners: dict[int, PersonSummary] = {}
        self._owners_epoch = 0
        self._keys: dict[str, ApiKeyPublic] | None = None
        """Every live key by its hash; None: read them afresh."""
        self._keys_read_at = 0.0
        self._keys_epoch = 0
        self._keys_lock = asyncio.Lock()

    def invalidate(self) -> None:
        """After a write through this process: read everything afresh."""
        self._state = None
        self._forget_owners()
        self._keys = None
        self._keys_epoch += 1

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around a write: afterwards (even a failed one, which may have half happened) read afresh."""
        try:
            yield
        finally:
            self.invalidate()

    def _fresh(self, read_at: float) -> bool:
        return time.monotonic() - read_at < self.refresh_s

    async def state(self) -> GalleryStatePublic:
        if self._state is not None and self._fresh(self._state_read_at):
            return self._state  # the common case: no lock
        async with self._state_lock:  # one read refreshes it for every waiting request
            if self._state is None or not self._fresh(self._state_read_at):
                state = await asyncio.to_thread(self.gallery.state)
                if self._state is None or state.generation != self._state.generation:
                    self._forget_owners()
                self._state, self._state_read_at = state, time.monotonic()
            return self._state

    def _forget_owners(self) -> None:
        self._owners = {}
        self._owners_epoch += 1

    async def owners(self, face_ids: Sequence[int]) -> dict[int, PersonSummary]:
        """face id → the person it belongs to, for the ids still in the gallery."""
        # The owners known when the lookup starts answer for their ids even if a write
        # forgets them meanwhile: re-reading them from the new dict would drop a person's
        # own faces from the answer and turn a match into "unknown".
        known = self._owners
        missing = sorted({i for i in face_ids if i not in known})
        if missing:
            epoch = self._owners_epoch
            found = await asyncio.to_thread(self.gallery.face_owners, missing)
            if epoch == self._owners_epoch:  # not forgotten meanwhile: still this generation's
                known.update(found)
            else:
                known = {**known, **found}
        return {i: known[i] for i in face_ids if i in known}

    async def authenticate(self, plaintext: str) -> ApiKeyPublic | None:
        """The key's record, or None when unknown or revoked.

        Checked against the live keys in memory. A key not among them is looked for again
        in a fresh read when the keys are older than a tenth of ``refresh_s``: a key just
        made on another replica works here at once, and a flood of wrong keys costs at most
        ten reads per ``refresh_s``, not one each.
        """
        digest = hash_key(plaintext)
        key = (await self._live_keys(self.refresh_s)).get(digest)
        if key is None:
            key = (await self._live_keys(self.refresh_s / 10)).get(digest)
        if key is not None and used_long_ago(key):
            key.last_used_at = utcnow()  # first, so requests meanwhile do not write again
            await asyncio.to_thread(self.gallery.touch_key, key.id)
        return key

    async def _live_keys(self, max_age_s: float) -> dict[str, ApiKeyPublic]:
        """The live keys, read afresh when older than ``max_age_s``."""
        keys = self._keys
        if keys is not None and time.monotonic() - self._keys_read_at < max_age_s:
            return keys
        async with self._keys_lock:  # one read refreshes them for every waiting request
            keys = self._keys
            if keys is None or time.monotonic() - self._keys_read_at >= max_age_s:
                epoch = self._keys_epoch
                keys = await asyncio.to_thread(self.gallery.live_keys)
                if epoch == self._keys_epoch:  # no write here meanwhile that the read may predate
                    self._keys, self._keys_read_at = keys, time.monotonic()
            return keys

    async def calibration(self, model_version: str) -> GalleryCalibration:
        """The calibration of ``model_version``'s gallery: its scores and the threshold in force.

        A live version's is kept, and read again in the background once the generation has
        changed and ``recalibrate_s`` has passed since it was read; another version's is read
        on each call.
        """
        state = await self.state()
        kept = self._calibrations.get(model_version)
        if kept is None:
            async with self._calibration_lock:  # one read for every request waiting for it
                kept = self._calibrations.get(model_version)
                if kept is None:
                    kept = await self._calibrate(model_version, state)
            return kept.calibration
        if kept.generation != state.generation and self._due(kept):
            self._recalibrate_later(model_version)
        return kept.calibration

    async def threshold(self, model_version: str) -> float:
        """The threshold in force for ``model_version`` (``Enrolment``'s ``threshold_for``)."""
        return (await self.calibration(model_version)).threshold

    async def recalibrate(self, model_version: str) -> GalleryCalibration:
        """Read ``model_version``'s scores now, whatever the generation and the time (after a
        recompute, say, which need not change the generation)."""
        async with self._calibration_lock:
            return (await self._calibrate(model_version, await self.state())).calibration

    async def close(self) -> None:
        """Stop any background recalibration (at shutdown)."""
        tasks = list(self._recalibrating.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _due(self, kept: _Calibrated) -> bool:
        return time.monotonic() - kept.at >= self.match.recalibrate_s

    async def _calibrate(self, model_version: str, state: GalleryStatePublic) -> _Calibrated:
        """Read the scores and calibrate on them (both off the event loop); kept if live."""
        calibration = await asyncio.to_thread(self._read_calibration, model_version)
        calibrated = _Calibrated(calibration, state.generation, time.monotonic())
        live = {state.active_model_version, state.pending_model_version}
        if model_version in live:
            kept = {v: c for v, c in self._calibrations.items() if v in live}
            self._calibrations = {**kept, model_version: calibrated}
        return calibrated

    def _read_calibration(self, model_version: str) -> GalleryCalibration:
        impostor, genuine = self.gallery.score_distribution(model_version)
        calibration = calibrate_gallery(
            model_version, impostor, genuine, self.match.target_far, self.shipped_threshold
        )
        _ = calibration.fingerprint  # hashing every score belongs off the event loop too
        return calibration

    def _recalibrate_later(self, model_version: str) -> None:
        running = self._recalibrating.get(model_version)
        if running is None or running.done():
            self._recalibrating[model_version] = asyncio.create_task(
                self._recalibrate(model_version), name=f"recalibrate {model_version}"
            )

    async def _recalibrate(self, model_version: str) -> None:
        try:
            async with self._calibration_lock:
                state = await self.state()
                kept = self._calibrations.get(model_version)
                if kept is None or (kept.generation != state.generation and self._due(kept)):
                    await self._calibrate(model_version, state)
        except Exception:
            log.exception("recalibrating model version %s failed; its calibration stands", model_version)
            kept = self._calibrations.get(model_version)
            if kept is not None:  # try again after recalibrate_s, not at the next request
                self._calibrations[model_version] = _Calibrated(
                    kept.calibration, kept.generation, time.monotonic()
                )
        finally:
            self._recalibrating.pop(model_version, None)
