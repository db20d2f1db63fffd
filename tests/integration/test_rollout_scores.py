"""A rollout scores the new version's faces before it switches, and drops the scores of the version
that is no longer live; a rebuild leaves them be. Real search service and SQLite gallery; the
embedder and Triton's model control are the stand-ins of ``test_rollout_lease``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.clients.search import SearchClient
from orchestrator.core.settings import RolloutSettings
from orchestrator.db import Gallery
from orchestrator.db.tables import PersonCreate
from orchestrator.gallery.live_view import LiveView
from orchestrator.gallery.rollout import RolloutRunner
from orchestrator.gallery.score_keeper import ScoreKeeper
from tests.integration import test_rollout_lease as lease
from tests.integration.test_rollout_lease import DIM, LEASE_S, Control, Embedder, enrol

pytestmark = pytest.mark.integration

# The lease tests' fixtures: a search service of this module's own, a gallery, a person, a repository.
search_process, search, gallery, person, repository = (
    lease.search_process,
    lease.search,
    lease.gallery,
    lease.person,
    lease.repository,
)


class Recording(ScoreKeeper):
    """The real keeper, noting the live version at each recompute."""

    def __init__(self, gallery: Gallery, search: SearchClient) -> None:
        super().__init__(gallery, search, neighbours=100)
        self.live_at_recompute: list[tuple[str, str]] = []

    async def recompute(self, collection: str, model_version: str) -> int:
        self.live_at_recompute.append((model_version, self.gallery.state().active_model_version))
        return await super().recompute(collection, model_version)


def runner(gallery: Gallery, search: SearchClient, control: Control, repository: Path) -> RolloutRunner:
    return RolloutRunner(
        gallery,
        search,
        Embedder(),  # type: ignore[arg-type]
        control,  # type: ignore[arg-type]
        DIM,
        RolloutSettings(batch=4, grace_s=0.1, lease_s=LEASE_S),
        LiveView(gallery, refresh_s=0.0),
        repository,
        scores=Recording(gallery, search),
    )


@pytest.fixture
async def scored(gallery: Gallery, search: SearchClient, person: int) -> list[int]:
    """Two people with 6 faces each on version 1, scored as enrolments keep them."""
    collection = gallery.state().active_collection
    other = gallery.create_person(PersonCreate(name="Bob")).id
    faces = [await enrol(gallery, search, who, i, collection) for i, who in enumerate([person, other] * 6)]
    await ScoreKeeper(gallery, search, neighbours=100).recompute(collection, "1")
    return faces


def counts(gallery: Gallery, version: str) -> tuple[int, int]:
    impostor, genuine = gallery.score_distribution(version)
    return len(impostor), len(genuine)


async def test_a_rollout_scores_the_new_version_before_the_switch_and_drops_the_old(
    gallery: Gallery, search: SearchClient, scored: list[int], repository: Path
) -> None:
    owner = runner(gallery, search, Control(), repository)
    record = await owner.start("2")
    await owner.wait()
    assert gallery.get_rollout(record.rollout_id).state == "done"
    assert owner.scores.live_at_recompute == [("2", "1")]  # type: ignore[attr-defined]
    assert counts(gallery, "2") == (len(scored), len(scored)) and counts(gallery, "1") == (0, 0)
    # What a recompute now finds is what the rollout left.
    before = gallery.score_distribution("2")
    await ScoreKeeper(gallery, search, neighbours=100).recompute(record.collection, "2")
    assert [sorted(s) for s in gallery.score_distribution("2")] == [sorted(s) for s in before]


async def test_a_rollout_undone_after_the_switch_drops_its_scores_and_rescores_the_old(
    gallery: Gallery, search: SearchClient, scored: list[int], person: int, repository: Path
) -> None:
    control = Control()
    late: list[int] = []

    async def enrol_then_fail() -> None:
        # A face enrolled while version 2 is live is scored for version 2 only; then a failure.
        late.append(await enrol(gallery, search, person, 99, gallery.state().active_collection))
        raise RuntimeError("Triton went away while draining")

    control.drain_hook = enrol_then_fail
    owner = runner(gallery, search, control, repository)
    record = await owner.start("2")
    await owner.wait()
    assert gallery.get_rollout(record.rollout_id).state == "failed" and late
    assert gallery.state().active_model_version == "1"
    assert owner.scores.live_at_recompute == [("2", "1"), ("1", "1")]  # type: ignore[attr-defined]
    assert counts(gallery, "2") == (0, 0)
    assert counts(gallery, "1") == (len(scored) + 1, len(scored) + 1)


async def test_a_rebuild_keeps_the_scores(
    gallery: Gallery, search: SearchClient, scored: list[int], repository: Path
) -> None:
    before = [sorted(s) for s in gallery.score_distribution("1")]
    owner = runner(gallery, search, Control(), repository)
    record = await owner.rebuild()
    await owner.wait()
    assert gallery.get_rollout(record.rollout_id).state == "done"
    assert owner.scores.live_at_recompute == []  # type: ignore[attr-defined]
    assert [sorted(s) for s in gallery.score_distribution("1")] == before
    assert len(before[0]) == len(scored)
