"""The memory the images being analysed may take at once: their uploads and decoded pixels.

A small flat PNG inside the pixel limit inflates to hundreds of MB while it is analysed,
and an upload of up to the body limit is held in memory through its analysis, so
counting images is not enough to bound memory. Each analysis reserves what its image will
take, its upload's bytes and its decoded pixels from the header's dimensions, before a
pixel is decoded, and gives it back when the analysis ends. An image that does not fit now
is refused at once (503 with Retry-After: waiting would hold its request, its body and a
connection meanwhile); one larger than the whole budget could never fit (413).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from orchestrator.core.errors import ImageTooLarge, UpstreamUnavailable
from orchestrator.pipeline.vision.decode import ImageHeader

DECODED_BYTES_PER_PIXEL = 7
"""Peak memory of one image's analysis per decoded pixel. Measured 6.0–6.6 (RSS) over JPEG,
PNG (flat, 16-bit RGBA), WebP and BMP with ``python -m loadtests.decode_memory``: the
decoder's BGR output and its RGB copy are alive together; only the face crops are greyed,
and the model inputs are small. Rounded up."""

_MB = 1024 * 1024


def decoded_bytes(header: ImageHeader) -> int:
    """What decoding and analysing this image will take at its peak, from its header alone."""
    return header.decoded_pixels * DECODED_BYTES_PER_PIXEL


def held_bytes(upload: bytes, header: ImageHeader) -> int:
    """What an analysis holds at its peak: the upload, alive throughout, and its pixels."""
    return len(upload) + decoded_bytes(header)


class Hold:
    """One analysis's share of the budget: taken in a worker thread, given back on the loop."""

    def __init__(self, budget: PixelBudget) -> None:
        self._budget = budget
        self.bytes = 0
        self.released = False

    def take(self, nbytes: int) -> None:
        """Reserve ``nbytes`` more, or raise: 413 if it could never fit, 503 if not now."""
        budget = self._budget
        with budget.lock:
            if self.released:
                # The analysis ended (cancelled) while its decode was on the way: nothing to hold for.
                raise RuntimeError("this hold was released: its analysis has ended")
            if self.bytes + nbytes > budget.capacity:
                raise ImageTooLarge(
                    f"analysing this image takes {nbytes / _MB:.0f} MB; the limit for images "
                    f"being analysed is {budget.capacity / _MB:.0f} MB"
                )
            if budget.in_use + nbytes > budget.capacity:
                free = budget.capacity - budget.in_use
                raise UpstreamUnavailable(
                    f"busy: analysing this image takes {nbytes / _MB:.0f} MB and {free / _MB:.0f} MB "
                    f"of {budget.capacity / _MB:.0f} MB are free; retry shortly"
                )
            budget.in_use += nbytes
            self.bytes += nbytes

    def release(self) -> None:
        """Give everything back; later calls do nothing and a later ``take`` fails."""
        with self._budget.lock:
            self._budget.in_use -= self.bytes
            self.bytes = 0
            self.released = True


class PixelBudget:
    """Bytes that the images being analysed may hold at once: uploads and decoded pixels.

    Thread-safe: holds are taken in the pixel thread pool, where headers are read.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"a pixel budget must be positive, not {capacity}")
        self.capacity = capacity
        self.in_use = 0
        self.lock = threading.Lock()

    @contextmanager
    def hold(self) -> Iterator[Hold]:
        """A hold for one analysis, released when the block ends however it ends."""
        held = Hold(self)
        try:
            yield held
        finally:
            held.release()
