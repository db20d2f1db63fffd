"""Jobs in the database, on every backend: each item claimed once, ended once and counted
once on its job; lost workers' items back in the queue; cancel, retry and retention."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import update

from orchestrator.core.errors import Conflict, InvalidRequest, NotFound
from orchestrator.db import Gallery
from orchestrator.db.job_tables import JobWorker
from orchestrator.db.jobs import NewItem
from orchestrator.db.types import utcnow


def _job(gallery: Gallery, n: int = 3, priority: str = "normal") -> int:
    items = [NewItem(f"img-{i}.jpg", [(f"img-{i}.jpg", bytes([i]) * 100)]) for i in range(n)]
    return gallery.create_job("recognize", priority, "key:1", {"top_k": 2}, items).job_id


def test_a_job_is_stored_with_its_items_and_their_images(gallery: Gallery) -> None:
    job_id = _job(gallery, 3, "low")
    job = gallery.job(job_id)
    assert (job.kind, job.priority, job.state, job.total, job.done, job.failed, job.progress) == (
        "recognize",
        "low",
        "queued",
        3,
        0,
        0,
        0.0,
    )
    items, total = gallery.job_items(job_id)
    assert total == 3 and [(i.index, i.filename, i.state, i.attempts) for i in items] == [
        (n, f"img-{n}.jpg", "queued", 0) for n in range(3)
    ]
    claim = gallery.claim_item(job_id, 1, "w1")
    assert claim is not None
    assert (claim.images, claim.options, claim.principal, claim.attempts) == (
        [("img-1.jpg", b"\x01" * 100)],
        {"top_k": 2},
        "key:1",
        1,
    )
    assert gallery.job(job_id).state == "running"


def test_two_deliveries_of_one_item_claim_it_once(gallery: Gallery) -> None:
    job_id = _job(gallery, 1)
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda n: gallery.claim_item(job_id, 0, f"w{n}"), range(8)))
    assert sum(claim is not None for claim in claims) == 1


def test_an_item_ends_once_and_its_job_with_its_last_item(gallery: Gallery) -> None:
    job_id = _job(gallery, 3)
    for index in range(3):
        assert gallery.claim_item(job_id, index, "w1") is not None
    assert gallery.finish_item(job_id, 0, "done", duration_ms=5.0, result={"faces": []}, recognised="A")
    assert not gallery.finish_item(job_id, 0, "done", duration_ms=6.0)  # a second delivery's end
    assert gallery.finish_item(job_id, 1, "failed", duration_ms=1.0, error={"status": 400})
    assert gallery.job(job_id).state == "running"
    assert gallery.finish_item(job_id, 2, "done", duration_ms=2.0)
    job = gallery.job(job_id)
    assert (job.state, job.done, job.failed, job.progress) == ("done", 2, 1, 1.0)
    assert job.finished_at is not None
    first = gallery.job_items(job_id)[0][0]
    assert (first.state, first.duration_ms, first.result, first.recognised) == (
        "done",
        5.0,
        {"faces": []},
        "A",
    )


def test_a_job_with_a_dead_item_ends_failed_and_retry_queues_it_again(gallery: Gallery) -> None:
    job_id = _job(gallery, 2)
    for index in range(2):
        gallery.claim_item(job_id, index, "w1")
    gallery.finish_item(job_id, 0, "done", duration_ms=1.0)
    gallery.finish_item(job_id, 1, "dead", duration_ms=1.0, error={"status": 503})
    assert gallery.job(job_id).state == "failed"
    dead, total = gallery.job_items(None, "dead")
    assert total == 1 and (dead[0].job_id, dead[0].index) == (job_id, 1)
    job, again = gallery.retry_job(job_id)
    assert (job.state, job.failed, job.finished_at) == ("running", 0, None)
    assert [(r.job_id, r.index, r.priority) for r in again] == [(job_id, 1, "normal")]
    claim = gallery.claim_item(job_id, 1, "w2")
    assert claim is not None and claim.attempts == 1  # attempts start again
    gallery.finish_item(job_id, 1, "done", duration_ms=1.0)
    assert gallery.job(job_id).state == "done"


def test_a_retried_item_goes_back_to_the_queue_with_its_last_error(gallery: Gallery) -> None:
    job_id = _job(gallery, 1)
    gallery.claim_item(job_id, 0, "w1")
    assert gallery.requeue_item(job_id, 0, {"status": 503, "detail": "Triton"})
    (item,), _ = gallery.job_items(job_id)
    assert (item.state, item.attempts, item.worker, item.error) == (
        "queued",
        1,
        None,
        {"status": 503, "detail": "Triton"},
    )
    claim = gallery.claim_item(job_id, 0, "w1")
    assert claim is not None and claim.attempts == 2


def test_the_items_of_a_silent_worker_are_queued_again(gallery: Gallery) -> None:
    job_id = _job(gallery, 3, "high")
    gallery.heartbeat("alive", 4)
    gallery.heartbeat("silent", 4)
    gallery.heartbeat("silent", 4)  # a second beat updates, does not insert
    gallery.claim_item(job_id, 0, "alive")
    gallery.claim_item(job_id, 1, "silent")
    gallery.claim_item(job_id, 2, "never-beat")
    with gallery._writing() as session:
        session.execute(
            update(JobWorker)
            .where(JobWorker.name == "silent")
            .values(seen_at=utcnow() - timedelta(minutes=5))
        )
    lost = gallery.requeue_lost(timedelta(seconds=30))
    assert sorted((r.index, r.priority) for r in lost) == [(1, "high"), (2, "high")]
    assert gallery.requeue_lost(timedelta(seconds=30)) == []
    states = {i.index: i.state for i in gallery.job_items(job_id)[0]}
    assert states == {0: "running", 1: "queued", 2: "queued"}
    assert [w.name for w in gallery.workers(utcnow() - timedelta(seconds=30))] == ["alive"]


def test_cancel_stops_the_queued_items_of_a_live_job_and_repeats_harmlessly(gallery: Gallery) -> None:
    job_id = _job(gallery, 3)
    gallery.claim_item(job_id, 0, "w1")
    job = gallery.cancel_job(job_id)
    assert job.state == "cancelled"
    assert gallery.claim_item(job_id, 1, "w1") is None
    assert gallery.finish_item(job_id, 0, "done", duration_ms=1.0)  # the running one ends as it will
    assert gallery.job(job_id).state == "cancelled"
    assert {i.index: i.state for i in gallery.job_items(job_id)[0]} == {
        0: "done",
        1: "cancelled",
        2: "cancelled",
    }
    assert gallery.cancel_job(job_id) == gallery.job(job_id)  # again: as it is
    done = _job(gallery, 1)
    gallery.claim_item(done, 0, "w1")
    gallery.finish_item(done, 0, "done", duration_ms=1.0)
    with pytest.raises(Conflict):
        gallery.cancel_job(done)
    with pytest.raises(NotFound):
        gallery.cancel_job(job_id + 1000)


def test_lists_are_paged_and_filtered(gallery: Gallery) -> None:
    ids = [_job(gallery, 1) for _ in range(3)]
    gallery.cancel_job(ids[0])
    jobs, total = gallery.list_jobs(limit=2)
    assert total == 3 and [j.job_id for j in jobs] == ids[::-1][:2]
    assert [j.job_id for j in gallery.list_jobs(state="cancelled")[0]] == [ids[0]]
    with pytest.raises(InvalidRequest):
        gallery.list_jobs(limit=0)
    with pytest.raises(NotFound):
        gallery.job_items(ids[-1] + 1000)


def test_ended_jobs_past_retention_go_with_their_images(gallery: Gallery) -> None:
    old, live = _job(gallery, 2), _job(gallery, 2)
    gallery.cancel_job(old)
    assert gallery.prune_jobs(utcnow() - timedelta(days=1)) == 0
    assert gallery.prune_jobs(utcnow() + timedelta(seconds=1)) == 1
    with pytest.raises(NotFound):
        gallery.job(old)
    assert gallery.job(live).state == "queued"
    assert gallery.claim_item(live, 0, "w1") is not None


def test_a_workers_running_items_it_does_not_hold_are_queued_again(gallery: Gallery) -> None:
    job_id = _job(gallery, 3)
    for index in range(3):
        gallery.claim_item(job_id, index, "w1")
    gallery.claim_item(_job(gallery, 1), 0, "w2")
    as_of = utcnow()
    later = _job(gallery, 1)
    gallery.claim_item(later, 0, "w1")  # claimed after the held set was copied: not in it
    back = gallery.requeue_unheld("w1", {(job_id, 0)}, as_of)
    assert sorted(r.index for r in back) == [1, 2]
    assert {i.index: i.state for i in gallery.job_items(job_id)[0]} == {
        0: "running",
        1: "queued",
        2: "queued",
    }
    assert gallery.job_items(later)[0][0].state == "running"
    assert gallery.requeue_unheld("w2", set(), as_of) != []  # another worker's are its own business


def test_queued_items_whose_message_is_overdue_are_found_stranded(gallery: Gallery) -> None:
    low, high = _job(gallery, 2, "low"), _job(gallery, 2, "high")
    gallery.claim_item(low, 0, "w1")
    gallery.claim_item(high, 1, "w1")
    gallery.requeue_item(high, 1, {"status": 503})  # tried once: its retry's message may be held
    now, later = utcnow(), utcnow() + timedelta(seconds=1)
    both = ["low", "high"]
    assert [
        (r.job_id, r.index) for r in gallery.stranded_items(later, now - timedelta(minutes=1), both, 10)
    ] == [
        (low, 1),
        (high, 0),
    ]
    # Past any retry's countdown, the tried one is overdue too.
    assert [(r.job_id, r.index) for r in gallery.stranded_items(later, later, ["high"], 10)] == [
        (high, 0),
        (high, 1),
    ]
    early = now - timedelta(minutes=1)
    assert gallery.stranded_items(early, early, both, 10) == []
    gallery.cancel_job(low)
    assert {r.job_id for r in gallery.stranded_items(later, later, both, 10)} == {high}
