"""LiveView's calibrations: read once, kept, read again after a change at most every recalibrate_s,
in the background, one read at a time; on every database backend."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from orchestrator.core.settings import MatchSettings
from orchestrator.db import Gallery
from orchestrator.db.face_scores import FaceScoreRow
from orchestrator.db.tables import PersonCreate
from orchestrator.gallery.calibration import GalleryCalibration, calibrate_gallery, scores_needed
from orchestrator.gallery.live_view import LiveView
from tests.db.test_faces import enrol, unit_vectors

LONG = 3600.0
TARGET = 0.1
NEEDED = scores_needed(TARGET)  # 29
SHIPPED = 0.38


class CountedReads:
    """The gallery's score reads, counted (and made slow or failing on demand)."""

    def __init__(self, gallery: Gallery) -> None:
        self.read = gallery.score_distribution
        self.count = 0
        self.delay_s = 0.0
        self.fail = False
        gallery.score_distribution = self  # type: ignore[method-assign]

    def __call__(self, model_version: str) -> tuple[list[float], list[float]]:
        self.count += 1
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("the database went away")
        return self.read(model_version)


def scored_faces(gallery: Gallery, count: int, impostor: Callable[[int], float], version: str = "1") -> None:
    """``count`` faces of two people, each with an impostor and a genuine score."""
    people = [gallery.create_person(PersonCreate(name=name)).id for name in ("Ann", "Bob")]
    ids = [
        enrol(gallery, people[i % 2], vector, version, tag=i)
        for i, vector in enumerate(unit_vectors(count, seed=count))
    ]
    gallery.put_face_scores(
        version,
        [FaceScoreRow(face_id, impostor(i), ids[i - 1], 0.75, ids[i - 2]) for i, face_id in enumerate(ids)],
    )


def live_view(gallery: Gallery, recalibrate_s: float, refresh_s: float = 0.0) -> LiveView:
    return LiveView(
        gallery, refresh_s, MatchSettings(target_far=TARGET, recalibrate_s=recalibrate_s), SHIPPED
    )


async def changed(live: LiveView, old: GalleryCalibration, within_s: float = 5.0) -> GalleryCalibration:
    """The calibration once the background read has replaced ``old``."""
    deadline = time.monotonic() + within_s
    while (found := await live.calibration("1")) is old:
        assert time.monotonic() < deadline, "the calibration was not read again"
        await asyncio.sleep(0.01)
    return found


async def test_the_first_ask_reads_and_the_answer_is_kept(gallery: Gallery) -> None:
    scored_faces(gallery, NEEDED + 11, impostor=lambda i: i / 100)
    reads = CountedReads(gallery)
    live = live_view(gallery, recalibrate_s=0.0)
    first = await live.calibration("1")
    impostor, genuine = gallery.score_distribution("1")
    expected = calibrate_gallery("1", impostor, genuine, TARGET, SHIPPED)
    assert (first.source, first.threshold) == ("gallery", expected.threshold)
    assert first.impostor.size == NEEDED + 11 and first.genuine.size == NEEDED + 11
    for _ in range(5):
        assert await live.calibration("1") is first  # no change: nothing read again
    assert await live.threshold("1") == first.threshold
    assert reads.count == 2  # the first ask, and this test's own read


async def test_concurrent_first_asks_share_one_read(gallery: Gallery) -> None:
    scored_faces(gallery, 4, impostor=lambda i: 0.1)
    reads = CountedReads(gallery)
    reads.delay_s = 0.2
    live = live_view(gallery, recalibrate_s=0.0)
    found = await asyncio.gather(*(live.calibration("1") for _ in range(8)))
    assert reads.count == 1
    assert all(f is found[0] for f in found)
    assert found[0].source == "shipped"  # 4 scores cannot certify 0.1


async def test_a_new_generation_is_read_in_the_background_and_the_threshold_switches(
    gallery: Gallery,
) -> None:
    scored_faces(gallery, NEEDED - 1, impostor=lambda i: 0.2)
    reads = CountedReads(gallery)
    live = live_view(gallery, recalibrate_s=0.0)
    before = await live.calibration("1")
    assert (before.source, before.threshold) == ("shipped", SHIPPED)
    scored_faces(gallery, 2, impostor=lambda i: 0.2)  # now enough scores for the target
    gallery.bump_generation()  # as an enrolment does, here or on another replica
    reads.delay_s = 0.3
    started = time.monotonic()
    assert await live.calibration("1") is before  # not held: the one at hand answers
    assert time.monotonic() - started < 0.2
    after = await changed(live, before)
    assert after.source == "gallery" and after.threshold > 0.2
    assert reads.count == 2


async def test_not_read_again_more_often_than_recalibrate_s(gallery: Gallery) -> None:
    scored_faces(gallery, 6, impostor=lambda i: 0.1)
    reads = CountedReads(gallery)
    live = live_view(gallery, recalibrate_s=0.5)
    first = await live.calibration("1")
    for _ in range(5):
        gallery.bump_generation()
        assert await live.calibration("1") is first
        await asyncio.sleep(0.02)
    assert reads.count == 1  # changed five times, within recalibrate_s of the read
    await asyncio.sleep(0.5)
    await changed(live, first)
    assert reads.count == 2


async def test_an_old_calibration_without_a_change_is_not_read_again(gallery: Gallery) -> None:
    scored_faces(gallery, 6, impostor=lambda i: 0.1)
    reads = CountedReads(gallery)
    live = live_view(gallery, recalibrate_s=0.0)
    first = await live.calibration("1")
    await asyncio.sleep(0.05)
    assert await live.calibration("1") is first
    await asyncio.sleep(0.05)
    assert reads.count == 1


async def test_a_failed_read_keeps_the_calibration_and_waits_before_trying_again(
    gallery: Gallery, caplog: pytest.LogCaptureFixture
) -> None:
    scored_faces(gallery, 6, impostor=lambda i: 0.1)
    reads = CountedReads(gallery)
    live = live_view(gallery, recalibrate_s=0.3)
    first = await live.calibration("1")
    await asyncio.sleep(0.3)
    gallery.bump_generation()
    reads.fail = True
    with caplog.at_level(logging.ERROR, logger="orchestrator.gallery.live_view"):
        assert await live.calibration("1") is first
        deadline = time.monotonic() + 5
        while reads.count < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
    assert "its calibration stands" in caplog.text
    for _ in range(5):  # the failure counts as a read: no retry at every request
        assert await live.calibration("1") is first
    assert reads.count == 2
    reads.fail = False
    await asyncio.sleep(0.3)
    await changed(live, first)


async def test_only_live_versions_are_kept(gallery: Gallery) -> None:
    scored_faces(gallery, 6, impostor=lambda i: 0.1, version="7")
    reads = CountedReads(gallery)
    live = live_view(gallery, recalibrate_s=LONG)
    seven = await live.calibration("7")
    assert seven.impostor.size == 6 and reads.count == 1
    await live.calibration("7")
    assert reads.count == 2  # not live: read on each ask
    gallery.set_pending("7", "arcface-v7-g1")  # a rollout to 7 is building its collection
    await live.calibration("7")
    await live.calibration("7")
    assert reads.count == 3


async def test_recalibrate_reads_at_once(gallery: Gallery) -> None:
    scored_faces(gallery, NEEDED - 1, impostor=lambda i: 0.2)
    reads = CountedReads(gallery)
    live = live_view(gallery, recalibrate_s=LONG)
    assert (await live.calibration("1")).source == "shipped"
    scored_faces(gallery, 2, impostor=lambda i: 0.2)  # scores recomputed: no new generation needed
    assert (await live.recalibrate("1")).source == "gallery"
    assert (await live.calibration("1")).source == "gallery"
    assert reads.count == 2


async def test_close_stops_a_background_read(gallery: Gallery) -> None:
    scored_faces(gallery, 6, impostor=lambda i: 0.1)
    reads = CountedReads(gallery)
    live = live_view(gallery, recalibrate_s=0.0)
    first = await live.calibration("1")
    gallery.bump_generation()
    reads.delay_s = 0.2
    assert await live.calibration("1") is first
    await asyncio.sleep(0.05)  # the background read is under way
    await live.close()
    await asyncio.sleep(0.3)  # its thread has finished by now, and what it read is dropped
    live.match = MatchSettings(target_far=TARGET, recalibrate_s=LONG)  # asking starts no other
    assert await live.calibration("1") is first
    assert reads.count == 2
