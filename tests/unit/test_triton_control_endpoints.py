"""Model control over every Triton a name stands for: resolution, fan-out, failures, keeping versions.

Names are resolved by the real ``getaddrinfo`` for IP literals and localhost; a headless
Service's name is answered by a stand-in resolver, and each Triton by a stand-in client,
so these run without DNS or servers (tests/integration/test_model_control.py has the real ones).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from tritonclient.utils import InferenceServerException

from orchestrator.clients import triton_control
from orchestrator.clients.triton_control import ModelControl, resolve, resolve_url
from orchestrator.core.errors import UpstreamUnavailable
from orchestrator.core.settings import Settings
from orchestrator.db.tables import GalleryStatePublic
from orchestrator.gallery.model_keeper import ensure_live_versions, live_versions
from orchestrator.runtime.processes import free_port

pytestmark = pytest.mark.unit

HEADLESS = "triton-headless"


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names the stand-in resolver answers (edit it to make replicas come and go); others resolve as usual."""
    names: dict[str, list[str]] = {HEADLESS: ["10.0.0.1", "10.0.0.2", "10.0.0.3"]}
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in names:
            return real(host, port, *args, **kwargs)
        if not names[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
            if ":" in ip
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in names[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


class FakeTriton:
    """What one Triton serves of ``arcface``, and the loads it was asked for."""

    def __init__(self, served: set[str]) -> None:
        self.served = set(served)
        self.loads: list[list[str]] = []
        self.failing: str | None = None
        """The gRPC status its calls fail with, if they do."""
        self.connects = 0
        self.closed = False

    def connect(self) -> FakeTriton:
        self.connects += 1
        self.closed = False
        return self

    async def get_model_config(self, model: str, **_: Any) -> dict[str, Any]:
        return {"config": {"name": model, "max_batch_size": 64}}

    async def load_model(self, model: str, config: str, **_: Any) -> None:
        if self.failing:
            raise InferenceServerException(msg=f"failed to load '{model}'", status=self.failing)
        versions = [str(v) for v in json.loads(config)["version_policy"]["specific"]["versions"]]
        self.loads.append(versions)
        self.served = set(versions)

    async def is_model_ready(self, model: str, version: str, **_: Any) -> bool:
        return version in self.served

    async def get_model_repository_index(self, **_: Any) -> dict[str, Any]:
        if self.failing:
            raise InferenceServerException(msg="connection refused", status=self.failing)
        return {"models": [{"name": "arcface", "version": v, "state": "READY"} for v in self.served]}

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def tritons(monkeypatch: pytest.MonkeyPatch, dns: dict[str, list[str]]) -> Iterator[dict[str, FakeTriton]]:
    """A stand-in Triton per address of the headless name, created as the control first calls it."""
    fakes: dict[str, FakeTriton] = {f"{ip}:8001": FakeTriton({"1"}) for ip in dns[HEADLESS]}
    monkeypatch.setattr(triton_control, "InferenceServerClient", lambda endpoint: fakes[endpoint].connect())
    yield fakes


@pytest.fixture
async def control(tritons: dict[str, FakeTriton]) -> Any:
    control = ModelControl([f"{HEADLESS}:8001"], None, timeout_s=1.0)
    yield control
    await control.close()


@pytest.mark.parametrize("address", ["10.1.2.3:8001", "127.0.0.1:8001", "[2001:db8::7]:8001", "[::1]:8001"])
async def test_an_ip_literal_stands_for_itself(address: str) -> None:
    assert await resolve(address) == [address]


async def test_localhost_is_one_server_on_its_ipv4_address() -> None:
    # Also resolves to ::1 on most machines: one server, not two.
    assert await resolve("localhost:8001") == ["127.0.0.1:8001"]


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        (["10.0.0.1", "10.0.0.2", "10.0.0.1"], ["10.0.0.1:8001", "10.0.0.2:8001"]),
        (["fd00::1", "fd00::2"], ["[fd00::1]:8001", "[fd00::2]:8001"]),
        # Dual stack: each pod has one address of each family.
        (["10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2"], ["10.0.0.1:8001", "10.0.0.2:8001"]),
    ],
)
async def test_a_headless_name_is_each_of_its_pods_once(
    dns: dict[str, list[str]], addresses: list[str], expected: list[str]
) -> None:
    dns[HEADLESS] = addresses
    assert await resolve(f"{HEADLESS}:8001") == expected


async def test_a_name_with_no_address_is_upstream_unavailable(dns: dict[str, list[str]]) -> None:
    dns[HEADLESS] = []
    with pytest.raises(UpstreamUnavailable, match=HEADLESS):
        await resolve(f"{HEADLESS}:8001")


@pytest.mark.parametrize("address", ["triton", "triton:", "triton:70000", ":8001", "http://triton:8001"])
async def test_an_address_that_is_not_host_and_port_is_refused_when_configured(address: str) -> None:
    with pytest.raises(ValueError):
        await resolve(address)
    with pytest.raises(ValueError):
        ModelControl([address], None)


def test_model_control_needs_at_least_one_address_and_a_metrics_url_with_a_host() -> None:
    with pytest.raises(ValueError):
        ModelControl([], None)
    for url in ("triton-headless:8002/metrics", "http:///metrics", "grpc://triton/metrics"):
        with pytest.raises(ValueError):
            ModelControl(["triton:8001"], url)


async def test_a_metrics_url_keeps_its_scheme_port_and_path_per_address(dns: dict[str, list[str]]) -> None:
    dns[HEADLESS] = ["10.0.0.1", "10.0.0.2"]
    assert await resolve_url(f"http://{HEADLESS}:8002/metrics") == [
        "http://10.0.0.1:8002/metrics",
        "http://10.0.0.2:8002/metrics",
    ]
    assert await resolve_url("http://[2001:db8::7]/metrics") == ["http://[2001:db8::7]:80/metrics"]


async def test_serve_versions_reaches_every_triton(control: ModelControl, tritons) -> None:
    await control.serve_versions("arcface", ["2", "1", "2"])
    assert {e: t.loads for e, t in tritons.items()} == {e: [["1", "2"]] for e in tritons}
    assert await control.served_versions("arcface") == {e: ["1", "2"] for e in tritons}


async def test_a_failing_triton_is_named_after_the_others_are_served(control: ModelControl, tritons) -> None:
    tritons["10.0.0.2:8001"].failing = "StatusCode.INTERNAL"
    with pytest.raises(UpstreamUnavailable) as raised:
        await control.serve_versions("arcface", ["1", "2"])
    assert "1 of 3 Tritons" in raised.value.detail and "10.0.0.2:8001" in raised.value.detail
    assert "10.0.0.1:8001" not in raised.value.detail
    assert tritons["10.0.0.1:8001"].served == tritons["10.0.0.3:8001"].served == {"1", "2"}


async def test_replicas_are_resolved_at_each_call_and_the_clients_of_those_gone_closed(
    control: ModelControl, tritons, dns: dict[str, list[str]]
) -> None:
    await control.serve_versions("arcface", ["1"])
    dns[HEADLESS] = ["10.0.0.3", "10.0.0.1"]
    assert await control.endpoints() == ["10.0.0.3:8001", "10.0.0.1:8001"]
    assert [e for e, t in tritons.items() if t.closed] == ["10.0.0.2:8001"]
    await control.close()
    assert all(t.closed for t in tritons.values())


async def test_ensure_live_versions_loads_only_where_a_version_is_missing(
    control: ModelControl, tritons
) -> None:
    tritons["10.0.0.1:8001"].served = {"1", "2"}
    tritons["10.0.0.3:8001"].served = {"2", "3"}
    # A rollout may serve two versions: what a Triton has is kept, only the missing one added.
    assert await ensure_live_versions(control, {"2"}, "arcface") == {"10.0.0.2:8001": ["1", "2"]}
    assert {e: t.loads for e, t in tritons.items()} == {
        "10.0.0.1:8001": [],
        "10.0.0.2:8001": [["1", "2"]],
        "10.0.0.3:8001": [],
    }
    assert await ensure_live_versions(control, {"2"}, "arcface") == {}


async def test_ensure_live_versions_serves_the_others_when_one_triton_fails(
    control: ModelControl, tritons
) -> None:
    tritons["10.0.0.1:8001"].failing = "StatusCode.INTERNAL"
    with pytest.raises(UpstreamUnavailable, match=r"10\.0\.0\.1:8001"):
        await ensure_live_versions(control, {"2"}, "arcface")
    assert tritons["10.0.0.2:8001"].served == tritons["10.0.0.3:8001"].served == {"1", "2"}


def test_the_live_versions_are_the_active_and_the_pending_one() -> None:
    idle = GalleryStatePublic(
        gallery_id="g",
        generation=1,
        active_model_version="1",
        active_collection="c1",
        pending_model_version=None,
        pending_collection=None,
        updated_at=datetime.now(UTC),
    )
    rolling = idle.model_copy(update={"pending_model_version": "2", "pending_collection": "c2"})
    assert live_versions(idle) == {"1"}
    assert live_versions(rolling) == {"1", "2"}


async def test_the_client_of_a_triton_that_did_not_answer_is_replaced(control: ModelControl, tritons) -> None:
    """A gRPC channel that failed to connect backs off for up to minutes; a new one does not."""
    restarting = tritons["10.0.0.2:8001"]
    await control.served_versions("arcface")
    restarting.failing = "StatusCode.INTERNAL"  # it answered: the channel is fine
    with pytest.raises(UpstreamUnavailable):
        await control.served_versions("arcface")
    assert (restarting.connects, restarting.closed) == (1, False)
    restarting.failing = "StatusCode.UNAVAILABLE"
    with pytest.raises(UpstreamUnavailable):
        await control.served_versions("arcface")
    assert (restarting.connects, restarting.closed) == (1, True)
    restarting.failing = None
    assert (await control.served_versions("arcface"))["10.0.0.2:8001"] == ["1"]
    assert restarting.connects == 2
    assert [t.connects for t in tritons.values()] == [1, 2, 1]


async def test_a_drain_whose_metrics_cannot_be_read_gives_up_at_its_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nothing_there = f"http://127.0.0.1:{free_port()}/metrics"
    control = ModelControl(["127.0.0.1:8001"], nothing_there, timeout_s=1.0)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=triton_control.__name__):
        await control.drain("arcface", "1", grace_s=0.0, timeout_s=0.5)
    assert 0.5 <= time.monotonic() - started < 5
    assert nothing_there in caplog.text and "unreadable" in caplog.text
    await control.close()


def test_control_urls_default_to_the_inference_url_and_read_a_json_list(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    for name in ("FACEREC_TRITON__URL", "FACEREC_TRITON__CONTROL_URLS", "FACEREC_TRITON__REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FACEREC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FACEREC_TRITON__URL", "triton:8001")
    assert Settings().triton_control_urls == ["triton:8001"]
    assert Settings().triton_repository == tmp_path / "models" / "repository" / "cpu"
    monkeypatch.setenv("FACEREC_TRITON__CONTROL_URLS", '["triton-headless:8001", "10.0.0.9:8001"]')
    monkeypatch.setenv("FACEREC_TRITON__REPOSITORY", "/facerec-data/models/repository/gpu")
    settings = Settings()
    assert settings.triton_control_urls == ["triton-headless:8001", "10.0.0.9:8001"]
    assert str(settings.triton_repository) == "/facerec-data/models/repository/gpu"
