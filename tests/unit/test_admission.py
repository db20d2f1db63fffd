"""Admission: one limit across the workers of a port, and the slow-start window after an idle spell."""

from __future__ import annotations

import asyncio
import multiprocessing
from contextlib import AbstractAsyncContextManager
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from orchestrator.api.admission import Admission
from orchestrator.api.in_flight import InFlightShare, InFlightSlots
from orchestrator.api.metrics import ApiMetrics
from orchestrator.core.errors import UpstreamUnavailable

pytestmark = pytest.mark.unit


def hold_images(path: Path, images: int, pipe: Connection) -> None:
    """Worker 1 of 2: takes ``images`` and holds them until told to release them."""
    admission = Admission(8, ApiMetrics(), InFlightSlots(InFlightShare(path, 1, 2)))
    admission.take(images)
    pipe.send("holding")
    pipe.recv()
    admission.release(images)
    pipe.send("released")


def test_the_limit_is_one_limit_for_workers_in_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "in-flight"
    InFlightShare.create(path, 2)
    here = Admission(8, ApiMetrics(), InFlightSlots(InFlightShare(path, 0, 2)))
    spawn = multiprocessing.get_context("spawn")
    pipe, theirs = spawn.Pipe()
    other = spawn.Process(target=hold_images, args=(path, 6, theirs))
    other.start()
    try:
        assert pipe.recv() == "holding"
        with pytest.raises(UpstreamUnavailable, match="6 images in flight"):
            here.take(3)
        assert here.in_flight == 0, "a refusal takes nothing"
        here.take(2)
        with pytest.raises(UpstreamUnavailable, match="8 images in flight"):
            here.take()
        pipe.send("release")
        assert pipe.recv() == "released"
        here.take(6)
        assert here.in_flight == 8
    finally:
        other.join(10)


def test_a_replacement_worker_zeroes_its_slot(tmp_path: Path) -> None:
    path = tmp_path / "in-flight"
    InFlightShare.create(path, 2)
    killed = InFlightSlots(InFlightShare(path, 1, 2))
    killed.publish(5)  # and then the process died
    survivor = InFlightSlots(InFlightShare(path, 0, 2))
    assert survivor.others() == 5
    InFlightSlots(InFlightShare(path, 1, 2))
    assert survivor.others() == 0


async def test_after_an_idle_spell_requests_wait_for_the_window_not_refused() -> None:
    admission = Admission(16, ApiMetrics(), idle_s=0.05)
    assert admission.first_window == 4
    for _ in range(8):
        admission.take()  # all eight are admitted: within the limit
    turns = [asyncio.create_task(enter(admission)) for _ in range(8)]
    await asyncio.sleep(0.01)
    assert sum(t.done() for t in turns) == 4
    await leave(turns[0])
    await asyncio.sleep(0)
    # Each one finished frees its place and opens the window by one: two more start, so the
    # window doubles every round, as TCP's slow start.
    assert sum(t.done() for t in turns) == 6 and admission.window == 5
    await leave(turns[1])
    await asyncio.sleep(0)
    assert all(t.done() for t in turns) and admission.window == 6
    for turn in turns[2:]:
        await leave(turn)
    assert admission.window == 12

    await asyncio.sleep(0.1)  # idle: the window closes again
    again = [asyncio.create_task(enter(admission)) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert sum(t.done() for t in again) == 4 and admission.window == 4
    await leave(again[0])
    await asyncio.sleep(0)
    for turn in again[1:]:
        await leave(turn)


async def test_a_request_cancelled_while_waiting_gives_its_turn_away() -> None:
    admission = Admission(1, ApiMetrics())  # a window of one, which cannot open further
    first = asyncio.create_task(enter(admission))
    gone = asyncio.create_task(enter(admission))
    after = asyncio.create_task(enter(admission))
    await asyncio.sleep(0.01)
    assert first.done() and not gone.done() and not after.done()
    gone.cancel()  # cancelled while waiting
    await asyncio.sleep(0)
    await leave(first)
    await asyncio.sleep(0)
    assert after.done(), "the cancelled request's place went to the next"

    granted = asyncio.create_task(enter(admission))
    last = asyncio.create_task(enter(admission))
    await asyncio.sleep(0.01)
    await leave(after)  # the turn goes to `granted`...
    granted.cancel()  # ...which is cancelled before it runs: it must pass the turn on
    await asyncio.sleep(0.01)
    assert granted.cancelled() and last.done()
    await leave(last)
    assert admission._started == 0 and not admission._waiting


async def enter(admission: Admission) -> AbstractAsyncContextManager[None]:
    """Enters ``admission.started()`` and returns the context to leave it by."""
    context = admission.started()
    await context.__aenter__()
    return context


async def leave(turn: asyncio.Task[AbstractAsyncContextManager[None]]) -> None:
    await turn.result().__aexit__(None, None, None)
