"""The pixel budget: what a hold takes and gives back, what it refuses, and under threads."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import numpy as np
import pytest

from orchestrator.clients.triton import TritonModels
from orchestrator.core.errors import ImageTooLarge, UpstreamUnavailable
from orchestrator.pipeline.face_pipeline import FacePipeline
from orchestrator.pipeline.memory_budget import (
    DECODED_BYTES_PER_PIXEL,
    PixelBudget,
    decoded_bytes,
    held_bytes,
)
from orchestrator.pipeline.vision.decode import DecodeLimits, read_header
from tests.support import augment

pytestmark = pytest.mark.unit


def test_a_hold_takes_and_gives_back() -> None:
    budget = PixelBudget(100)
    with budget.hold() as first, budget.hold() as second:
        first.take(60)
        second.take(30)
        first.take(10)
        assert budget.in_use == 100
        first.release()
        assert budget.in_use == 30
        first.release()  # twice: nothing more given back
        assert budget.in_use == 30
    assert budget.in_use == 0


def test_what_does_not_fit_now_is_503_and_takes_nothing() -> None:
    budget = PixelBudget(100)
    with budget.hold() as first, budget.hold() as second:
        first.take(70)
        with pytest.raises(UpstreamUnavailable) as refused:
            second.take(31)
        assert refused.value.retry_after_s >= 1
        assert budget.in_use == 70 and second.bytes == 0
        second.take(30)  # what fits still does
    assert budget.in_use == 0


def test_what_could_never_fit_is_413_even_when_the_budget_is_free() -> None:
    budget = PixelBudget(100)
    with budget.hold() as held, pytest.raises(ImageTooLarge):
        held.take(101)
    assert budget.in_use == 0


def test_a_hold_is_given_back_when_its_block_raises() -> None:
    budget = PixelBudget(100)
    with pytest.raises(KeyError), budget.hold() as held:
        held.take(50)
        raise KeyError("the analysis failed")
    assert budget.in_use == 0


def test_a_take_after_the_hold_ended_holds_nothing() -> None:
    """A decode still on its way when its analysis was cancelled must not keep memory."""
    budget = PixelBudget(100)
    with budget.hold() as held:
        pass
    with pytest.raises(RuntimeError, match="released"):
        held.take(10)
    assert budget.in_use == 0


def test_concurrent_takes_never_exceed_the_budget() -> None:
    budget = PixelBudget(10 * 7)
    threads = 32
    # A timeout only so that a bug fails the test instead of hanging it.
    start, tried = threading.Barrier(threads, timeout=60), threading.Barrier(threads, timeout=60)

    def take() -> bool:
        with budget.hold() as held:
            start.wait()
            try:
                held.take(7)
                admitted = True
            except UpstreamUnavailable:
                admitted = False
            tried.wait()  # everyone has tried while the admitted still hold
            return admitted

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(lambda _: take(), range(threads)))
    assert outcomes.count(True) == 10
    assert budget.in_use == 0


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PixelBudget(0)


def test_decoded_bytes_count_the_pixels_libjpeg_will_produce() -> None:
    """A large JPEG is decoded reduced: it is counted at the reduced size, sides rounded up."""
    rgb = np.full((2403, 4801, 3), 90, np.uint8)
    header = read_header(augment.encode(rgb), DecodeLimits())
    assert header.reduction == 4  # the shorter side stays ≥ 480
    assert header.decoded_pixels == 1201 * 601
    assert decoded_bytes(header) == 1201 * 601 * DECODED_BYTES_PER_PIXEL


class BlockedDetector:
    """Never answers until let go: an analysis parked after its decode."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def infer(self, model: str, batch: np.ndarray, version: str = "1") -> dict[str, np.ndarray]:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def infer_bytes(self, model: str, values: object, version: str = "1") -> dict[str, np.ndarray]:
        return await self.infer(model, np.zeros(0), version)


@pytest.mark.parametrize("chain", [True, False], ids=["chain", "three-calls"])
async def test_a_cancelled_analysis_gives_its_share_back(chain: bool) -> None:
    budget = PixelBudget(1 << 30)
    detector = BlockedDetector()
    pipeline = FacePipeline(cast(TritonModels, detector), budget=budget, chain=chain)
    image = augment.encode(np.full((120, 160, 3), 90, np.uint8))
    analysis = asyncio.ensure_future(pipeline.analyse(image))
    entered = asyncio.ensure_future(detector.entered.wait())
    await asyncio.wait({analysis, entered}, return_when=asyncio.FIRST_COMPLETED)
    assert detector.entered.is_set(), analysis
    assert budget.in_use == held_bytes(image, read_header(image))
    analysis.cancel()
    with pytest.raises(asyncio.CancelledError):
        await analysis
    assert budget.in_use == 0
