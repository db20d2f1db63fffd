"""Two replicas on PostgreSQL through a killed rollout runner, a killed Triton, a killed search
service and a rolling restart, under recognition and enrolment traffic (tests.support.faults)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.modelrepo.importer import derive
from orchestrator.modelrepo.repository import read_version_policy
from orchestrator.runtime.triton_env import TritonEnvironment
from tests.support import faults
from tests.support.databases import SERVERS, scratch_database
from tests.support.stack import redis_url

pytestmark = pytest.mark.integration

SERVING_AGAIN_S = 30.0


@pytest.fixture(scope="module")
def version(model_store: ModelStore) -> str:
    """A rotated embedding space: a request that mixed versions would answer nonsense."""
    return str(derive(model_store, "rotated"))


@pytest.fixture(scope="module")
def cluster(
    model_store: ModelStore,
    triton_env: TritonEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
    version: str,
) -> Iterator[faults.Cluster]:
    if "postgresql" not in SERVERS:
        pytest.skip("the fault scenario runs its replicas on PostgreSQL; DATABASE_URL names another server")
    root = tmp_path_factory.mktemp("faults")
    with (
        scratch_database(SERVERS["postgresql"]) as database,
        faults.running_cluster(root, model_store, triton_env, database, redis_url()) as cluster,
    ):
        yield cluster


def test_replicas_survive_kills_and_restarts_with_no_wrong_answer(
    cluster: faults.Cluster, photos: Path, version: str
) -> None:
    seeded = faults.seed(cluster.replicas[0].url, photos)
    record = asyncio.run(faults.run(cluster, version, seeded))
    summary = faults.summary(record)
    print(json.dumps(summary, indent=2))

    final = record.rollout["final"]
    assert final["state"] == "done", final
    assert final["owner"] != record.rollout["killed_at"]["owner"], "the rollout was not taken over"
    # The live version is on disk: Triton loaded it by itself when it came back.
    assert read_version_policy(cluster.triton.repository / ARCFACE.name) == [version]
    assert record.rollout["served_by_restarted_triton"] == [version]

    assert [a.wrong for a in record.answers if a.wrong] == []
    assert summary["failed_while_nothing_was_down"] == 0, faults.failures_outside(record)
    failed = [a for a in record.answers if a.status not in (200, 201)]
    assert all(a.status in (0, 503) for a in failed), failed
    assert summary["503_without_retry_after"] == 0
    # A broken connection only when a replica itself was killed with requests in it.
    replica_kill = record.events[0]
    broken = [a for a in failed if a.status == 0]
    assert all(replica_kill.began <= a.at <= (replica_kill.recovered or 0) + 1 for a in broken), "\n".join(
        faults.timeline(record, broken)
    )
    for event in record.events:
        assert event.seconds is not None and event.seconds < SERVING_AGAIN_S, summary["events"]
    # A replica drains before it stops: a rolling restart costs no request.
    assert [e["failed"] for e in summary["events"] if e["name"].startswith("rolling")] == [{}, {}]

    assert record.enrolled, "no enrolment was acknowledged"
    url = cluster.replicas[1].url
    assert asyncio.run(faults.not_found(url, record.enrolled, seeded.people)) == []
    with httpx.Client(base_url=url, headers=faults.HEADERS, timeout=60.0) as client:
        gallery = client.get("/health/detailed").json()["gallery"]
        assert gallery["in_agreement"] is True, gallery
        probe = seeded.probes[0][1]
        assert (
            client.post("/v1/recognize", files={"file": ("p.jpg", probe)}).json()["model_version"] == version
        )


def test_two_rollouts_posted_at_once_to_two_replicas_give_one_202_and_one_409(
    cluster: faults.Cluster, version: str
) -> None:
    async def post_both() -> list[httpx.Response]:
        clients = [
            httpx.AsyncClient(base_url=r.url, headers=faults.HEADERS, timeout=60.0) for r in cluster.replicas
        ]
        try:
            active = (await clients[0].get("/v1/models")).json()["active"]["version"]
            target = "1" if active == version else version
            return list(
                await asyncio.gather(
                    *(c.post("/v1/models/rollouts", json={"version": target}) for c in clients)
                )
            )
        finally:
            for client in clients:
                await client.aclose()

    answers = asyncio.run(post_both())
    assert sorted(a.status_code for a in answers) == [202, 409], [a.text for a in answers]
    started = next(a.json() for a in answers if a.status_code == 202)
    with httpx.Client(base_url=cluster.replicas[1].url, headers=faults.HEADERS, timeout=60.0) as client:
        rollout = faults.follow(client, started["rollout_id"])
    assert rollout["state"] == "done", rollout
