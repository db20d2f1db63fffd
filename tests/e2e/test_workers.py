"""Several orchestrator workers on one port: they share it, a killed one is restarted while the
others serve, and stopping the parent stops them all."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from orchestrator.runtime.triton_server import TritonServer
from tests.e2e.flows import best_name, create_person, enrol, recognize
from tests.support.stack import Stack, redis_url, sqlite_url

pytestmark = pytest.mark.integration

WORKERS = 2


@pytest.fixture
def workers_stack(triton_server: TritonServer, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(
        tmp_path,
        triton_server,
        sqlite_url(tmp_path),
        redis_url(),
        {"FACEREC_API__WORKERS": str(WORKERS), "FACEREC_API__MAX_CONCURRENT_IMAGES": "8"},
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def workers_of(stack: Stack) -> list[psutil.Process]:
    assert stack.api.pid is not None
    return psutil.Process(stack.api.pid).children()


def wait_for(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def answering(stack: Stack, connections: int = 24) -> set[int]:
    """The workers that hold the connections opened now, each having answered on its own."""
    held = set()
    clients = [httpx.Client(base_url=stack.url, timeout=30.0) for _ in range(connections)]
    try:
        for client in clients:
            assert client.get("/health/live").status_code == 200
        for worker in workers_of(stack):
            ports = {c.laddr.port for c in worker.net_connections("tcp") if c.status == "ESTABLISHED"}
            if stack.api.port in ports:
                held.add(worker.pid)
    finally:
        for client in clients:
            client.close()
    return held


def test_workers_share_the_port_survive_a_kill_and_stop_with_the_parent(
    workers_stack: Stack, photos: Path
) -> None:
    stack = workers_stack
    # The stack is ready once one worker serves; the kernel spreads connections over each
    # as it starts listening.
    wait_for(lambda: len(answering(stack)) == WORKERS)
    workers = workers_of(stack)
    assert answering(stack) == {w.pid for w in workers}
    # One admission limit for them all: each maps the same file of in-flight counts.
    shared = [{m.path for m in w.memory_maps() if m.path.endswith("/in-flight")} for w in workers]
    assert len(shared[0]) == 1 and all(maps == shared[0] for maps in shared), shared
    with stack.client() as client:
        person = create_person(client, "Barack Obama")
        enrol(client, person["id"], photos / "obama.jpg")
        # What one worker wrote, every worker answers: each asks in turn on a new connection.
        for _ in range(6):
            with stack.client() as fresh:
                assert best_name(recognize(fresh, photos / "obama2.jpg")) == "Barack Obama"
        keys = [k for k in client.get("/v1/keys").json()["items"] if k["role"] == "admin"]
        assert len(keys) == 1  # the first admin key was made once, not once per worker

    killed = workers[0]
    killed.kill()
    killed.wait(10)
    # The others serve at once: the killed one's socket left the port with it.
    for _ in range(10):
        with stack.client() as fresh:
            assert fresh.get("/v1/people").status_code == 200
    wait_for(
        lambda: len(workers_of(stack)) == WORKERS and killed.pid not in {w.pid for w in workers_of(stack)}
    )
    wait_for(lambda: len(answering(stack)) == WORKERS)
    replacement = [w for w in workers_of(stack) if w.pid != workers[1].pid]
    assert {m.path for m in replacement[0].memory_maps() if m.path.endswith("/in-flight")} == shared[0]

    parent = stack.api
    pids = [w.pid for w in workers_of(stack)]
    assert parent.pid is not None
    os.kill(parent.pid, signal.SIGTERM)
    assert parent.wait_exit() == 0
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
