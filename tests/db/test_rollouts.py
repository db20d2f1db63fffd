"""Rollout records: one unfinished at a time on every database, and ownership by lease."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from orchestrator.core.errors import Conflict
from orchestrator.db import Gallery
from orchestrator.db.rollouts import LeaseLost
from orchestrator.db.types import utcnow

LEASE = timedelta(seconds=30)


def start(gallery: Gallery, owner: str = "a") -> int:
    record = gallery.start_rollout(
        "1", "2", "arcface-v2-x", from_collection="arcface-v1-g1", owner=owner, lease=LEASE
    )
    return record.rollout_id


def race(gallery: Gallery, starters: int) -> list[str]:
    """``starters`` threads start a rollout at the same instant; what each got."""
    barrier = threading.Barrier(starters)
    outcomes: list[str] = []

    def attempt(owner: str) -> None:
        barrier.wait()
        try:
            start(gallery, owner)
            outcomes.append("started")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(f"p{i}",)) for i in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)


def test_starts_at_once_give_exactly_one_rollout(gallery: Gallery) -> None:
    """Without the lock on the gallery-state row both pass on PostgreSQL (nothing to lock)."""
    for _ in range(8):
        assert race(gallery, 4) == ["conflict"] * 3 + ["started"]
        (running,) = gallery.unfinished_rollouts()
        gallery.update_rollout(running.rollout_id, state="failed")


def test_a_started_rollout_carries_what_a_takeover_needs(gallery: Gallery) -> None:
    rollout_id = start(gallery, "host:1:abc")
    record = gallery.get_rollout(rollout_id)
    assert record.owner == "host:1:abc" and record.kind == "rollout"
    assert record.from_collection == "arcface-v1-g1" and record.state == "pending"
    assert record.lease_expires_at is not None
    assert LEASE - timedelta(seconds=5) < record.lease_expires_at - utcnow() <= LEASE


def test_a_live_lease_is_not_claimed_and_an_expired_one_is_claimed_once(gallery: Gallery) -> None:
    rollout_id = start(gallery, "a")
    assert gallery.claim_expired_rollout("b", LEASE) is None
    later = utcnow() + LEASE + timedelta(seconds=1)
    claimed = gallery.claim_expired_rollout("b", LEASE, now=later)
    assert claimed is not None and claimed.rollout_id == rollout_id and claimed.owner == "b"
    assert gallery.claim_expired_rollout("c", LEASE, now=later) is None


def test_the_owner_that_lost_its_lease_can_change_nothing(gallery: Gallery) -> None:
    rollout_id = start(gallery, "a")
    gallery.claim_expired_rollout("b", LEASE, now=utcnow() + 2 * LEASE)
    with pytest.raises(LeaseLost):
        gallery.renew_lease(rollout_id, "a", LEASE)
    with pytest.raises(LeaseLost):
        gallery.update_rollout(rollout_id, owner="a", state="switching")
    assert gallery.get_rollout(rollout_id).state == "pending"
    gallery.update_rollout(rollout_id, owner="b", state="reembedding")
    gallery.renew_lease(rollout_id, "b", LEASE)
    assert gallery.get_rollout(rollout_id).state == "reembedding"


def test_a_released_lease_is_claimed_at_once(gallery: Gallery) -> None:
    rollout_id = start(gallery, "a")
    gallery.release_lease(rollout_id, "a")
    claimed = gallery.claim_expired_rollout("b", LEASE)
    assert claimed is not None and claimed.rollout_id == rollout_id


def test_a_finished_rollout_has_no_lease_to_renew_or_claim(gallery: Gallery) -> None:
    rollout_id = start(gallery, "a")
    gallery.update_rollout(rollout_id, owner="a", state="done")
    with pytest.raises(LeaseLost):
        gallery.renew_lease(rollout_id, "a", LEASE)
    assert gallery.claim_expired_rollout("b", LEASE, now=utcnow() + 2 * LEASE) is None
