"""The rollout runner's lease: takeover of a dead owner's rollout, no takeover of a live one,
a bounded shutdown, faces that arrive across the switch, and a rebuild under traffic.

Real search service and SQLite gallery; the embedder and Triton's model control are
stand-ins here (the end-to-end rollout tests and the fault test run the real ones).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from orchestrator.clients.search import SearchClient, SearchServiceError
from orchestrator.core.settings import RolloutSettings
from orchestrator.db import Gallery, default_database_url, make_engine, migrate
from orchestrator.db.tables import PersonCreate
from orchestrator.gallery.index_sync import ensure_collection
from orchestrator.gallery.live_view import LiveView
from orchestrator.gallery.rollout import RolloutRunner
from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.modelrepo.repository import model_config, read_version_policy, render
from search_service.checksum import checksum_of_ids
from search_service.schema import CollectionSpec
from tests.support.processes import SearchServiceProcess

pytestmark = pytest.mark.integration

DIM = 512
LEASE_S = 1.5


def vector(seed: bytes) -> np.ndarray:
    v = np.random.default_rng(int.from_bytes(hashlib.sha256(seed).digest()[:8])).standard_normal(DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


class Embedder:
    """Embeds a crop into a vector that depends on the crop and the version; can be held."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls = 0

    async def embed_crops(self, crops: np.ndarray, version: str = "1") -> np.ndarray:
        self.calls += 1
        await self.gate.wait()
        return np.stack([vector(crop.tobytes() + version.encode()) for crop in crops])


class Control:
    """Triton's model control, recorded; ``on_drain`` runs after the switch, before the unload."""

    def __init__(self) -> None:
        self.served: list[list[str]] = []
        self.load_gate = asyncio.Event()
        self.load_gate.set()
        self.on_drain: list[asyncio.Future[None]] = []
        self.drain_hook: object = None

    async def serve_versions(self, model: str, versions: list[str]) -> None:
        await self.load_gate.wait()
        self.served.append(sorted(versions))

    async def drain(self, model: str, version: str, grace_s: float) -> None:
        if callable(self.drain_hook):
            await self.drain_hook()  # type: ignore[misc]
        await asyncio.sleep(grace_s)


@pytest.fixture(scope="module")
def search_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchServiceProcess]:
    with SearchServiceProcess(tmp_path_factory.mktemp("lease") / "search") as process:
        yield process


@pytest.fixture
async def search(search_process: SearchServiceProcess) -> AsyncIterator[SearchClient]:
    async with SearchClient([search_process.url], token=search_process.token) as client:
        yield client


@pytest.fixture
def gallery(tmp_path: Path) -> Iterator[Gallery]:
    engine = make_engine(default_database_url(tmp_path))
    migrate(engine)
    yield Gallery(engine)
    engine.dispose()


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A model repository with arcface versions 1 and 2, its policy saying [1]."""
    root = tmp_path / "repository"
    for version in ("1", "2"):
        (root / ARCFACE.name / version).mkdir(parents=True)
    (root / ARCFACE.name / "config.pbtxt").write_text(render(model_config(ARCFACE, "gpu")))
    return root


def crop_png(i: int) -> bytes:
    pixels = np.random.default_rng(i).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


async def enrol(gallery: Gallery, search: SearchClient, person_id: int, i: int, collection: str) -> int:
    """A face as the enrolment writes it: the database with version 1, then the live collection."""
    png = crop_png(i)
    crop = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    embedding = vector(crop.tobytes() + b"1")
    face = await asyncio.to_thread(
        lambda: gallery.add_face(
            person_id,
            embedding=embedding,
            model_version="1",
            crop_png=png,
            image_sha256=f"{i:064x}",
            quality=0.9,
            det_score=0.99,
            box=[0.0, 0.0, 10.0, 10.0],
        )
    )
    await search.add(collection, [face.face_id], embedding[None])
    return face.face_id


@pytest.fixture
async def person(gallery: Gallery, search: SearchClient) -> int:
    state = gallery.state()
    await search.drop_collection(state.active_collection, missing_ok=True)
    await ensure_collection(search, state.active_collection, CollectionSpec(dim=DIM))
    return gallery.create_person(PersonCreate(name="Ada")).id


@pytest.fixture
async def people(gallery: Gallery, search: SearchClient, person: int) -> list[int]:
    """40 faces of one person, enrolled on version 1."""
    collection = gallery.state().active_collection
    return [await enrol(gallery, search, person, i, collection) for i in range(40)]


async def dropped(search: SearchClient, collection: str) -> bool:
    try:
        await search.info(collection)
    except SearchServiceError as error:
        return error.status == 404
    return False


def runner(
    gallery: Gallery, search: SearchClient, embedder: Embedder, control: Control, repository: Path
) -> RolloutRunner:
    return RolloutRunner(
        gallery,
        search,
        embedder,  # type: ignore[arg-type]
        control,  # type: ignore[arg-type]
        DIM,
        RolloutSettings(batch=4, grace_s=0.1, lease_s=LEASE_S),
        LiveView(gallery, refresh_s=0.0),
        repository,
    )


async def until(predicate, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def agrees(gallery: Gallery, search: SearchClient, version: str) -> bool:
    state = gallery.state()
    expected = checksum_of_ids(gallery.face_ids(version))
    return (await search.info(state.active_collection)).checksum == expected


async def test_a_rollout_whose_owner_died_is_carried_on_by_another_replica(
    gallery: Gallery, search: SearchClient, people: list[int], repository: Path
) -> None:
    first, second = Embedder(), Embedder()
    dead = runner(gallery, search, first, Control(), repository)
    first.gate.clear()  # held in its first re-embedding batch
    record = await dead.start("2")
    await until(lambda: first.calls > 0)
    assert gallery.get_rollout(record.rollout_id).state == "reembedding"
    for task in list(dead._tasks.values()):  # killed: no clean-up, the lease is left to run out
        task.cancel()
    await asyncio.sleep(0)

    heir = runner(gallery, search, second, Control(), repository)
    watching = asyncio.create_task(heir.watch())
    try:
        await until(lambda: gallery.get_rollout(record.rollout_id).state == "done", timeout_s=30)
    finally:
        watching.cancel()
    done = gallery.get_rollout(record.rollout_id)
    assert done.owner == heir.owner and done.owner != dead.owner
    state = gallery.state()
    assert (state.active_model_version, state.active_collection) == ("2", record.collection)
    assert state.pending_collection is None
    assert len(gallery.face_ids("2")) == len(people) and await agrees(gallery, search, "2")
    assert read_version_policy(repository / ARCFACE.name) == ["2"]
    assert await dropped(search, record.from_collection)


async def test_a_live_lease_is_not_taken_over_during_a_long_load(
    gallery: Gallery, search: SearchClient, people: list[int], repository: Path
) -> None:
    control = Control()
    control.load_gate.clear()  # a TensorRT build: minutes in one load call
    owner = runner(gallery, search, Embedder(), control, repository)
    record = await owner.start("2")
    other = runner(gallery, search, Embedder(), Control(), repository)
    watching = asyncio.create_task(other.watch())
    await asyncio.sleep(4 * LEASE_S)
    assert gallery.get_rollout(record.rollout_id).owner == owner.owner
    control.load_gate.set()
    await owner.wait()
    watching.cancel()
    done = gallery.get_rollout(record.rollout_id)
    assert (done.state, done.owner) == ("done", owner.owner)
    assert await agrees(gallery, search, "2")


async def test_shutdown_does_not_wait_for_a_rollout_and_hands_it_over_at_once(
    gallery: Gallery, search: SearchClient, people: list[int], repository: Path
) -> None:
    control = Control()
    control.load_gate.clear()
    leaving = runner(gallery, search, Embedder(), control, repository)
    record = await leaving.start("2")
    await asyncio.wait_for(leaving.close(), timeout=5)
    lease = gallery.get_rollout(record.rollout_id).lease_expires_at
    assert lease is not None
    claimed = gallery.claim_expired_rollout("next", timedelta(seconds=30))
    assert claimed is not None and claimed.rollout_id == record.rollout_id


async def test_a_face_committed_after_the_switch_is_in_the_new_collection(
    gallery: Gallery, search: SearchClient, person: int, people: list[int], repository: Path
) -> None:
    """An enrolment that read the live pair before the rollout began and commits after its
    last re-embedding pass wrote version 1 only, to the old collection."""
    before = gallery.state()
    control = Control()
    late: list[int] = []

    async def enrol_late() -> None:
        late.append(await enrol(gallery, search, person, 999, before.active_collection))

    control.drain_hook = enrol_late
    owner = runner(gallery, search, Embedder(), control, repository)
    record = await owner.start("2")
    await owner.wait()
    assert gallery.get_rollout(record.rollout_id).state == "done" and late
    assert late[0] in gallery.face_ids("2").tolist()
    assert await agrees(gallery, search, "2")
    hits = await search.search(record.collection, vector(b"x")[None], k=100)
    assert late[0] in [hit.id for hit in hits[0]]


async def test_a_rebuild_moves_the_live_version_to_a_complete_new_collection(
    gallery: Gallery, search: SearchClient, people: list[int], repository: Path
) -> None:
    before = gallery.state()
    await search.delete(before.active_collection, people[:3])  # an index behind the database
    assert not await agrees(gallery, search, "1")
    control = Control()
    owner = runner(gallery, search, Embedder(), control, repository)
    record = await owner.rebuild()
    await owner.wait()
    after = gallery.state()
    assert gallery.get_rollout(record.rollout_id).state == "done"
    assert after.active_model_version == "1" and after.active_collection == record.collection
    assert after.active_collection != before.active_collection
    assert await agrees(gallery, search, "1")
    assert control.served == []  # the version stays: no reload of the serving model
