"""Model rollouts under live recognition traffic: to a rotated embedding space and back."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.db.tables import ROLLOUT_FINISHED
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.modelrepo.importer import derive
from orchestrator.runtime.triton_env import TritonEnvironment
from orchestrator.runtime.triton_server import TritonServer
from tests.conftest import local_triton
from tests.e2e.flows import create_person, enrol
from tests.support import augment
from tests.support.rollout_traffic import follow_rollout, recognition_traffic
from tests.support.stack import ADMIN_KEY, BACKENDS, Stack, redis_url, sqlite_url

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def versions(model_store: ModelStore) -> dict[str, str]:
    return {kind: str(derive(model_store, kind)) for kind in ("rotated", "int8")}


@pytest.fixture(scope="module")
def own_triton(
    model_store: ModelStore, triton_env: TritonEnvironment, tmp_path_factory: pytest.TempPathFactory, versions
) -> Iterator[TritonServer]:
    """Rollouts load and unload arcface versions: a Triton of their own keeps other tests out of it."""
    with local_triton(model_store, triton_env, tmp_path_factory.mktemp("rollout-triton")) as server:
        yield server


@pytest.fixture(scope="module", params=BACKENDS)
def search_backend(request: pytest.FixtureRequest) -> str:
    """Every rollout here runs on the FAISS service, then on Milvus (Lite)."""
    return str(request.param)


@pytest.fixture(scope="module")
def stack(
    own_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory, search_backend: str
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp(f"rollout-{search_backend}")
    running = Stack(
        root,
        own_triton,
        sqlite_url(root),
        redis_url(),
        api_env={"FACEREC_TRITON__METRICS_URL": own_triton.metrics_url, "FACEREC_ROLLOUT__BATCH": "8"},
        backend=search_backend,
    ).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def people(stack: Stack, photos: Path) -> dict[str, int]:
    with stack.client() as client:
        obama = create_person(client, "Barack Obama")["id"]
        biden = create_person(client, "Joe Biden")["id"]
        for name, person in (("obama.jpg", obama), ("obama2.jpg", obama), ("biden.jpg", biden)):
            data = (photos / name).read_bytes()
            enrol(client, person, data)
            for factor in (0.5, 0.7, 0.85):
                enrol(client, person, augment.scaled(data, factor))
    return {"Barack Obama": obama, "Joe Biden": biden}


def probes(photos: Path) -> list[tuple[str, bytes]]:
    obama3 = (photos / "obama3.jpg").read_bytes()
    biden = (photos / "biden.jpg").read_bytes()
    return [
        ("Barack Obama", obama3),
        ("Joe Biden", augment.reencoded(biden, 50)),
        ("Barack Obama", augment.scaled(obama3, 0.6)),
        ("Joe Biden", augment.rotated_by_exif(biden)),
    ]


async def swap_under_traffic(
    stack: Stack, photos: Path, to_version: str
) -> tuple[list[dict], list[str], dict, dict]:
    records: list[dict[str, Any]] = []
    stop = asyncio.Event()
    samples = probes(photos)
    workers = [
        asyncio.create_task(recognition_traffic(stack.api.url, samples[i:] + samples[:i], stop, records))
        for i in range(4)
    ]
    async with httpx.AsyncClient(
        base_url=stack.api.url, headers={"X-API-Key": ADMIN_KEY}, timeout=60.0
    ) as admin:
        await asyncio.sleep(2)
        forward, there = await follow_rollout(admin, "/v1/models/rollouts", {"version": to_version})
        await asyncio.sleep(2)
        back, again = await follow_rollout(admin, f"/v1/models/rollouts/{forward['rollout_id']}/rollback")
        await asyncio.sleep(1)
        original = (await admin.get(f"/v1/models/rollouts/{forward['rollout_id']}")).json()
    stop.set()
    await asyncio.gather(*workers)
    return records, [state for state, _ in there + again], original, back


def finished(client: httpx.Client, rollout: dict[str, Any], timeout_s: float = 300.0) -> dict[str, Any]:
    """Poll a rollout record until it has finished (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    while rollout["state"] not in ROLLOUT_FINISHED and time.monotonic() < deadline:
        time.sleep(0.1)
        rollout = client.get(f"/v1/models/rollouts/{rollout['rollout_id']}").json()
    return rollout


def test_a_rollout_and_its_rollback_under_traffic_fail_no_request(
    stack: Stack, people, photos: Path, versions
) -> None:
    records, states, forward, back = asyncio.run(swap_under_traffic(stack, photos, versions["rotated"]))
    failures = [r for r in records if r["status"] != 200]
    assert failures == [], failures[:3]
    assert forward["state"] == "rolled_back" and back["state"] == "done", (forward, back)
    assert {"loading", "reembedding", "draining", "done"} <= set(states), states
    served = Counter(r["version"] for r in records)
    assert served["1"] > 0 and served[versions["rotated"]] > 0, served
    wrong = [r for r in records if r["decision"] != "match" or r["name"] != r["expected"]]
    assert wrong == [], wrong[:3]
    # A query embedded by one version and searched in the other's collection would score
    # near 0 (the rotated space is orthogonal to v1's): every answer was consistent.
    assert min(r["similarity"] for r in records) > 0.5
    print(f"\nrollout under traffic: {len(records)} requests, versions {dict(served)}, 0 failures")


def test_after_the_rollback_everything_is_back_on_version_1(
    stack: Stack, people, photos: Path, versions
) -> None:
    with stack.client() as client:
        models = client.get("/v1/models").json()
        assert models["active"] == {"name": "arcface", "version": "1"}
        ready = {v["version"] for v in models["versions"] if v["state"] == "READY"}
        assert ready == {"1"}, models
        detailed = client.get("/health/detailed").json()
        assert detailed["gallery"]["in_agreement"] is True
        assert detailed["gallery"]["faces"] == 12


def test_a_failed_rollout_rolls_back_by_itself(stack: Stack, people, photos: Path) -> None:
    with stack.client() as client:
        before = client.get("/health/detailed").json()["gallery"]
        started = client.post("/v1/models/rollouts", json={"version": "99"})
        assert started.status_code == 202
        rollout = finished(client, started.json(), timeout_s=60)
        assert rollout["state"] == "failed" and "99" in rollout["error"]
        after = client.get("/health/detailed").json()["gallery"]
        assert after["collection"] == before["collection"] and after["in_agreement"] is True
        assert client.get("/v1/models").json()["active"]["version"] == "1"
        answer = client.post(
            "/v1/recognize", files={"file": ("o.jpg", (photos / "obama3.jpg").read_bytes())}
        ).json()
        assert answer["faces"][0]["matches"][0]["name"] == "Barack Obama"


def test_the_int8_version_serves_the_same_people(stack: Stack, people, photos: Path, versions) -> None:
    with stack.client() as client:
        assert client.post("/v1/models/rollouts", json={"version": "1"}).status_code == 409
        rollout = finished(
            client, client.post("/v1/models/rollouts", json={"version": versions["int8"]}).json()
        )
        assert rollout["state"] == "done", rollout
        for name, data in probes(photos):
            answer = client.post("/v1/recognize", files={"file": ("p.jpg", data)}).json()
            assert answer["model_version"] == versions["int8"]
            assert answer["faces"][0]["matches"][0]["name"] == name
        back = finished(client, client.post(f"/v1/models/rollouts/{rollout['rollout_id']}/rollback").json())
        assert back["state"] == "done"
