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
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence

from orchestrator.db.gallery import Gallery
from orchestrator.db.keys import hash_key, used_long_ago
from orchestrator.db.tables import ApiKeyPublic, GalleryStatePublic, PersonSummary
from orchestrator.db.types import utcnow


class LiveView:
    def __init__(self, gallery: Gallery, refresh_s: float) -> None:
        self.gallery = gallery
        self.refresh_s = refresh_s
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
