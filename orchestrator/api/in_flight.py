"""Images in flight across the workers of one port, so that their admission limit is one limit.

Each worker had a share of the limit (32 of 64 for two), but the kernel spreads connections
unevenly over SO_REUSEPORT sockets: one worker refused while the other had room, and a
limit sized for the machine could not be set without refusing clients below it.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

SLOT_BYTES = 8


@dataclass(frozen=True)
class InFlightShare:
    """Where worker ``index`` of ``workers`` finds the shared counts (it travels pickled)."""

    path: Path
    index: int
    workers: int

    @staticmethod
    def create(path: Path, workers: int) -> None:
        """The file of ``workers`` zeroed slots, made by the workers' parent before they start."""
        path.write_bytes(bytes(SLOT_BYTES * workers))


class InFlightSlots:
    """Each worker's images in flight in its own 8-byte slot of a file every worker maps.

    One writer per slot, so no lock: a worker reads the others' slots, then writes its own,
    and two workers admitting in the same instant can overshoot the limit by one image each.
    A worker's replacement takes its index and zeroes the slot, so the images of a killed
    worker stop counting once it is replaced (until then they hold places, on the safe side).
    The map lives as long as the process.
    """

    def __init__(self, share: InFlightShare) -> None:
        self.index, self.workers = share.index, share.workers
        fd = os.open(share.path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, SLOT_BYTES * share.workers)
        finally:
            os.close(fd)
        self._slots = memoryview(self._map).cast("q")  # aligned 8-byte stores: never torn
        self.publish(0)

    def publish(self, images: int) -> None:
        self._slots[self.index] = images

    def others(self) -> int:
        """Images in flight in the other workers."""
        return sum(self._slots) - self._slots[self.index]
