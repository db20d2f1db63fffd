"""Model control over two real Tritons behind one name, as over the pods of a headless Service.

Both serve the same read-only repository on the same gRPC and metrics ports, one on
127.0.0.1 and one on 127.0.0.2; here the name ``triton-headless`` resolves to both, as a
headless Service's name resolves to its ready pods. What each Triton serves is read from
its own HTTP API, not through the code under test.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import numpy as np
import pytest
from tritonclient.grpc.aio import InferenceServerClient, InferInput

from orchestrator.clients.triton_control import ModelControl, pending_requests
from orchestrator.core.errors import UpstreamUnavailable
from orchestrator.gallery.model_keeper import ensure_live_versions
from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.modelrepo.importer import derive
from orchestrator.runtime.processes import free_port
from orchestrator.runtime.triton_env import TritonEnvironment
from orchestrator.runtime.triton_server import TritonPorts, TritonServer
from tests.conftest import local_triton

pytestmark = pytest.mark.integration

HEADLESS = "triton-headless"
HOSTS = ("127.0.0.1", "127.0.0.2")
MODEL = ARCFACE.name
FLOOD_REQUESTS = 8
"""Full batches sent at once to one Triton so that its queue for version 1 builds up."""


@pytest.fixture(scope="module")
def rotated(model_store: ModelStore) -> str:
    """A second arcface version in the shared repository (made once, as the rollout tests do)."""
    return str(derive(model_store, "rotated"))


@pytest.fixture(scope="module")
def tritons(
    model_store: ModelStore,
    triton_env: TritonEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
    rotated: str,
) -> Iterator[list[TritonServer]]:
    """Two Tritons on the same gRPC and metrics ports, one per loopback address, started side by side."""
    first = local_triton(model_store, triton_env, tmp_path_factory.mktemp("control-a"))
    assert first.host == HOSTS[0]
    # Its own HTTP port all the same: the Python backend's shared memory is named after it.
    ports = TritonPorts(free_port(), first.ports.grpc, first.ports.metrics)
    log = tmp_path_factory.mktemp("control-b") / "triton.log"
    second = TritonServer(triton_env, first.repository, log, ports, first.models, host=HOSTS[1])
    with ExitStack() as stack:
        for server in (first, second):
            server.start()
            stack.callback(server.stop)
        for server in (first, second):
            server.wait_ready()
        yield [first, second]


@pytest.fixture(scope="module")
def headless() -> Iterator[str]:
    """``triton-headless`` resolves to both Tritons' addresses; other names as usual."""
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host != HEADLESS:
            return real(host, port, *args, **kwargs)
        return [found for ip in HOSTS for found in real(ip, port, *args, **kwargs)]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield HEADLESS


@pytest.fixture
async def control(tritons: list[TritonServer], headless: str) -> AsyncIterator[ModelControl]:
    ports = tritons[0].ports
    control = ModelControl(
        [f"{headless}:{ports.grpc}"], f"http://{headless}:{ports.metrics}/metrics", timeout_s=30.0
    )
    yield control
    await control.close()


async def ready_versions(server: TritonServer) -> list[str]:
    async with httpx.AsyncClient(timeout=10) as http:
        index = (await http.post(f"{server.http_url}/v2/repository/index")).json()
    ready = (m["version"] for m in index if m["name"] == MODEL and m.get("state") == "READY")
    return sorted(ready, key=int)


async def test_the_name_stands_for_both_tritons(control: ModelControl, tritons: list[TritonServer]) -> None:
    assert await control.endpoints() == [server.grpc_url for server in tritons]


async def test_serve_versions_changes_every_triton(
    control: ModelControl, tritons: list[TritonServer], rotated: str
) -> None:
    await control.serve_versions(MODEL, ["1", rotated])
    assert [await ready_versions(s) for s in tritons] == [["1", rotated]] * 2
    assert await control.served_versions(MODEL) == {s.grpc_url: ["1", rotated] for s in tritons}

    await control.serve_versions(MODEL, [rotated])
    assert [await ready_versions(s) for s in tritons] == [[rotated]] * 2


async def test_a_triton_that_does_not_answer_is_named_and_the_others_are_served(
    tritons: list[TritonServer], headless: str, rotated: str
) -> None:
    port = tritons[0].ports.grpc
    absent = f"127.0.0.3:{port}"
    control = ModelControl([f"{headless}:{port}", absent], None, timeout_s=10.0)
    try:
        await control.serve_versions(MODEL, [rotated])
    except UpstreamUnavailable as error:
        assert re.search(rf"1 of 3 Tritons.*{re.escape(absent)}", error.detail), error.detail
        assert not any(s.grpc_url in error.detail for s in tritons), error.detail
    else:
        pytest.fail("serving on a Triton that is not there succeeded")
    finally:
        await control.close()
    assert [await ready_versions(s) for s in tritons] == [[rotated]] * 2


async def test_a_restarted_triton_gets_the_live_version_back(
    control: ModelControl, tritons: list[TritonServer], rotated: str
) -> None:
    await control.serve_versions(MODEL, [rotated])
    steady, restarted = tritons
    await asyncio.to_thread(restarted.stop)
    with pytest.raises(UpstreamUnavailable, match=re.escape(restarted.grpc_url)):
        await control.served_versions(MODEL)
    await asyncio.to_thread(restarted.start)
    await asyncio.to_thread(restarted.wait_ready)
    on_disk = await ready_versions(restarted)  # what its config.pbtxt says: version 1 as fetched
    assert on_disk and rotated not in on_disk, on_disk

    both = sorted([*on_disk, rotated], key=int)
    assert await ensure_live_versions(control, {rotated}, MODEL) == {restarted.grpc_url: both}
    assert await ready_versions(restarted) == both
    assert await ready_versions(steady) == [rotated]
    assert await ensure_live_versions(control, {rotated}, MODEL) == {}


async def queued(http: httpx.AsyncClient, server: TritonServer, version: str) -> int:
    return pending_requests((await http.get(server.metrics_url)).text, MODEL, version)


async def test_a_drain_waits_until_every_tritons_queue_is_empty(
    control: ModelControl, tritons: list[TritonServer], rotated: str
) -> None:
    await control.serve_versions(MODEL, ["1", rotated])
    # The second address: a drain that read only the first Triton would find it idle.
    idle, busy = tritons
    faces = InferInput("input", [ARCFACE.max_batch_size, 3, 112, 112], "FP32")
    faces.set_data_from_numpy(np.zeros((ARCFACE.max_batch_size, 3, 112, 112), np.float32))
    busy_seen: list[float] = []  # when each read that found a queue on `busy` was sent
    async with InferenceServerClient(busy.grpc_url) as client, httpx.AsyncClient(timeout=10) as http:
        flood = [
            asyncio.create_task(client.infer(MODEL, [faces], model_version="1", client_timeout=120))
            for _ in range(FLOOD_REQUESTS)
        ]

        first_queue = asyncio.Event()

        async def watch() -> None:
            while not all(task.done() for task in flood):
                sent = time.monotonic()
                if await queued(http, busy, "1"):
                    busy_seen.append(sent)
                    first_queue.set()
                await asyncio.sleep(0.02)
            first_queue.set()

        watcher = asyncio.create_task(watch())
        await first_queue.wait()
        assert busy_seen, f"{FLOOD_REQUESTS} full batches built no queue: send more"
        started = time.monotonic()
        await control.drain(MODEL, "1", grace_s=0.0, timeout_s=120.0)
        drained = time.monotonic()
        assert await queued(http, busy, "1") == 0 and await queued(http, idle, "1") == 0
        await asyncio.gather(*flood)
        await watcher
    assert any(sent >= started for sent in busy_seen), "the queue was gone before the drain began"
    assert max(busy_seen) < drained, "the drain ended while a queue was still there"
