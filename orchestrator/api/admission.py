"""Admission: how many images are analysed at once, refused at once past the bound."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from orchestrator.api.in_flight import InFlightSlots
from orchestrator.api.metrics import ApiMetrics
from orchestrator.core.errors import UpstreamUnavailable


class Admission:
    """Bounds the images analysed at once; past the bound, refuse at once instead of queueing.

    The door (:mod:`orchestrator.api.door`) takes one image for every request to a route
    that analyses images, before its body is read; a route that analyses more than one per
    request (a batch, verify) takes the others with :meth:`more` once it knows how many.
    Only touched from the event loop, so plain counters are enough. With ``slots``, the
    limit is for every worker on the port together (:mod:`orchestrator.api.in_flight`).

    Admitted requests then start their analysis through a window that opens by one for each
    one finished (slow start, as TCP's: it doubles every round), from a quarter of this
    worker's share up to the limit, and closes again after ``idle_s`` with nothing in
    flight. Without it, a burst on an idle server starts the whole limit in one instant and
    those images move through decoding and every model in lockstep: with 256 clients
    starting within a second, the first 64 took 3.7-4.9 s where the steady state answers in
    1.2 s, and their decoding starved the event loop, so the door's refusals meanwhile took
    up to a second (``python -m loadtests.edge``). A request waiting for the window is
    admitted: it waits, it is not refused.
    """

    def __init__(
        self, limit: int, metrics: ApiMetrics, slots: InFlightSlots | None = None, idle_s: float = 2.0
    ) -> None:
        self.limit = limit
        self.metrics = metrics
        self.slots = slots
        self.in_flight = 0
        """This worker's images in flight (admitted, waiting for the window or analysed)."""
        workers = slots.workers if slots else 1
        self.first_window = max(1, limit // (4 * workers))
        self.window = self.first_window
        self.idle_s = idle_s
        self._started = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._idle_since = time.monotonic()

    def take(self, images: int = 1) -> None:
        """Count ``images`` more in flight, or raise ``UpstreamUnavailable`` (503) past the limit."""
        everyone = self.in_flight + (self.slots.others() if self.slots else 0)
        if everyone + images > self.limit:
            raise UpstreamUnavailable(
                f"busy: {everyone} images in flight (limit {self.limit}); retry shortly"
            )
        self._count(images)

    def release(self, images: int = 1) -> None:
        self._count(-images)

    def _count(self, images: int) -> None:
        self.in_flight += images
        if self.slots:
            self.slots.publish(self.in_flight)
        self.metrics.in_flight.set(self.in_flight)

    @asynccontextmanager
    async def more(self, images: int) -> AsyncIterator[None]:
        """``images`` more for the block, beyond the one the door took for the request."""
        self.take(images)
        try:
            yield
        finally:
            self.release(images)

    @asynccontextmanager
    async def started(self) -> AsyncIterator[None]:
        """An admitted request's turn to be analysed, through the slow-start window."""
        await self._start()
        try:
            yield
        finally:
            self._finish()

    def _open(self) -> bool:
        if self._started == 0 and time.monotonic() - self._idle_since > self.idle_s:
            self.window = self.first_window
        return self._started < self.window

    async def _start(self) -> None:
        if not self._waiting and self._open():
            self._started += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn  # _finish counts it started before it wakes it
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._finish()  # its turn came with the cancellation: pass it on
            elif turn in self._waiting:
                self._waiting.remove(turn)
            raise

    def _finish(self) -> None:
        self._started -= 1
        self.window = min(self.limit, self.window + 1)
        if self._started == 0:
            self._idle_since = time.monotonic()
        while self._waiting and self._started < self.window:
            turn = self._waiting.popleft()
            if not turn.done():
                self._started += 1
                turn.set_result(None)
