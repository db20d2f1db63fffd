"""Crashes between the database and the index, a cache that is down, and a graceful stop."""

import signal
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.runtime.processes import free_port
from orchestrator.runtime.triton_server import TritonServer
from tests.e2e.flows import best_name, create_person, enrol, recognize
from tests.support.stack import Stack, redis_url, sqlite_url

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_stack(triton_server: TritonServer, tmp_path: Path):
    stacks: list[Stack] = []

    def make(cache_url: str | None, api_env: dict[str, str] | None = None) -> Stack:
        root = tmp_path / f"s{len(stacks)}"
        stack = Stack(root, triton_server, sqlite_url(tmp_path), cache_url, api_env)
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in stacks:
        stack.stop()


def test_a_kill_between_database_and_index_is_repaired_at_start(fresh_stack, photos: Path) -> None:
    stack = fresh_stack(redis_url())
    with stack.client() as client:
        person = create_person(client, "Barack Obama")
        enrol(client, person["id"], photos / "obama.jpg")
        stack.api.stop()
        stack.api.start(extra_env={"FACEREC_FAILPOINTS": "enrol-after-database"}).wait_ready()
        with pytest.raises(httpx.TransportError):
            client.post(
                f"/v1/people/{person['id']}/faces",
                files={"file": ("f.jpg", (photos / "obama2.jpg").read_bytes())},
            )
        assert stack.api.wait_exit() == 137
        stack.api.start().wait_ready()
        gallery = client.get("/health/detailed").json()
        assert gallery["startup_reconciliation"]["rebuilt"] is True
        assert gallery["gallery"]["in_agreement"] is True and gallery["gallery"]["faces"] == 2
        faces = client.get(f"/v1/people/{person['id']}/faces").json()["items"]
        answer = recognize(client, photos / "obama2.jpg")
        assert answer["faces"][0]["matches"][0]["face_id"] == max(f["face_id"] for f in faces)
        assert answer["faces"][0]["matches"][0]["similarity"] > 0.99


def test_a_kill_after_a_delete_never_serves_the_orphan(fresh_stack, photos: Path) -> None:
    stack = fresh_stack(redis_url())
    with stack.client() as client:
        keep = create_person(client, "Joe Biden")
        enrol(client, keep["id"], photos / "biden.jpg")
        gone = create_person(client, "Barack Obama")
        enrol(client, gone["id"], photos / "obama.jpg")
        stack.api.stop()
        stack.api.start(extra_env={"FACEREC_FAILPOINTS": "delete-after-database"}).wait_ready()
        with pytest.raises(httpx.TransportError):
            client.delete(f"/v1/people/{gone['id']}")
        assert stack.api.wait_exit() == 137
        stack.api.start().wait_ready()
        detailed = client.get("/health/detailed").json()
        assert detailed["startup_reconciliation"]["rebuilt"] is True
        assert detailed["gallery"]["in_agreement"] is True and detailed["gallery"]["faces"] == 1
        answer = recognize(client, photos / "obama2.jpg")
        assert gone["id"] not in [m["person_id"] for m in answer["faces"][0]["matches"]]
        assert client.get(f"/v1/people/{gone['id']}").status_code == 404


def test_with_the_cache_down_answers_still_come_uncached(fresh_stack, photos: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    stack = fresh_stack(dead)
    with stack.client() as client:
        person = create_person(client, "Joe Biden")
        enrol(client, person["id"], photos / "biden.jpg")
        first = recognize(client, photos / "biden.jpg")
        second = recognize(client, photos / "biden.jpg")
        assert best_name(first) == best_name(second) == "Joe Biden"
        assert first["cached"] is False and second["cached"] is False
        cache = client.get("/health/detailed").json()["cache"]
        assert cache["state"] == "degraded" and cache["errors"] >= 1
        assert httpx.get(stack.api.url + "/health/ready").status_code == 200


def test_sigterm_drains_out_of_rotation_then_stops(fresh_stack, photos: Path) -> None:
    stack = fresh_stack(None, {"FACEREC_API__SHUTDOWN_DRAIN_S": "3"})
    with stack.client() as client:
        person = create_person(client, "Joe Biden")
        enrol(client, person["id"], photos / "biden.jpg")
        began = time.monotonic()
        stack.api.proc.send_signal(signal.SIGTERM)
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["shutdown"]["ok"] is False
        answer = client.post("/v1/recognize", files={"file": ("b.jpg", (photos / "biden.jpg").read_bytes())})
        assert answer.status_code == 200 and best_name(answer.json()) == "Joe Biden"
        assert answer.headers["connection"] == "close"
        # uvicorn ends a graceful shutdown by raising the signal it caught again.
        assert stack.api.wait_exit(30) in (0, -signal.SIGTERM)
        assert time.monotonic() - began >= 3.0, "it stopped before its drain was over"
