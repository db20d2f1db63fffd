"""Which versions of a model every Triton serves, changed without downtime (explicit model control).

A load with a config override whose ``version_policy`` lists the wanted versions makes
Triton load the new ones beside those already serving, and unload the ones left out
once their in-flight requests are done.

Each Triton replica serves what it was told, so every call goes to every replica: a name
that resolves to several addresses (a Kubernetes headless Service) stands for all of them,
and is resolved again at each call since replicas come and go.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from orchestrator.core.errors import FacerecError, UpstreamUnavailable

log = logging.getLogger(__name__)

LOAD_TIMEOUT_S = 300.0
PENDING_METRIC = "nv_inference_pending_request_count"
DRAIN_POLL_S = 0.1
DEFAULT_PORTS = {"http": 80, "https": 443}
UNREACHABLE = "StatusCode.UNAVAILABLE"
"""How tritonclient reports a call that found no server (``InferenceServerException.status()``)."""

T = TypeVar("T")


def pending_requests(metrics_text: str, model: str, version: str) -> int:
    """Triton's queue length for one model version, from its Prometheus metrics text.

    Samples are matched by label values, in whatever order Triton writes the labels: reading
    0 by mistake would end a drain early. A version with no sample has nothing queued. Text
    that is not Prometheus exposition format raises ValueError rather than reading as 0.
    """
    return sum(
        # A sum, so a label Triton may add later (a GPU, say) splits the count without losing it.
        int(sample.value)
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == PENDING_METRIC
        and sample.labels.get("model") == model
        and sample.labels.get("version") == version
    )


def with_versions(config: dict[str, Any], versions: Iterable[str]) -> dict[str, Any]:
    wanted = sorted({int(v) for v in versions})
    return {**config, "version_policy": {"specific": {"versions": wanted}}}


def host_and_port(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for an IPv6 literal) split; ValueError if it is not one."""
    parts = urlsplit(f"//{address}")
    if not parts.hostname or parts.port is None:  # .port raises ValueError itself when out of range
        raise ValueError(f"{address!r} is not host:port")
    return parts.hostname, parts.port


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve(address: str) -> list[str]:
    """The servers ``host:port`` stands for: one ``ip:port`` per address of the host, no repeats.

    Resolved in a thread (``getaddrinfo`` blocks), in the resolver's order. A host with
    addresses of both families is taken for dual-stack servers (localhost, the pods of a
    dual-stack Service), each with one address of each family: only the IPv4 ones count, or
    every server would count twice. A host that does not resolve (a headless Service with
    no ready pod) is UpstreamUnavailable.
    """
    host, port = host_and_port(address)
    try:
        found = await asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UpstreamUnavailable(f"{host} does not resolve: {error.strerror}") from error
    ips = list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))
    ipv4 = [ip for ip in ips if ":" not in ip]
    return [join_host_port(ip, port) for ip in ipv4 or ips]


def url_address(url: str) -> str:
    """The ``host:port`` an HTTP(S) URL connects to; ValueError if it names none."""
    parts = urlsplit(url)
    if not parts.hostname or (parts.port is None and parts.scheme not in DEFAULT_PORTS):
        raise ValueError(f"{url!r} is not an http(s) URL with a host")
    return join_host_port(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme])


async def resolve_url(url: str) -> list[str]:
    """``url`` once per address of its host (same scheme, port and path), as :func:`resolve`."""
    parts = urlsplit(url)
    return [parts._replace(netloc=address).geturl() for address in await resolve(url_address(url))]


class ModelControl:
    """Model control over every Triton that ``grpc_urls`` stand for; drains over ``metrics_url``'s.

    One gRPC client per resolved address, kept while the address is, closed when it goes.
    """

    def __init__(self, grpc_urls: Sequence[str], metrics_url: str | None, timeout_s: float = 10.0) -> None:
        if not grpc_urls:
            raise ValueError("no Triton address for model control")
        # A malformed address fails here, not at the first rollout.
        for url in grpc_urls:
            host_and_port(url)
        if metrics_url:
            url_address(metrics_url)
        self.grpc_urls = list(grpc_urls)
        self.metrics_url = metrics_url
        self.timeout_s = timeout_s
        self._clients: dict[str, InferenceServerClient] = {}

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(client.close() for client in clients))

    async def endpoints(self) -> list[str]:
        """Every Triton now, as ``ip:port``; the clients of addresses no longer there are closed.

        A call still running on such a client fails, as it would have against a replica
        that has left.
        """
        resolved = await asyncio.gather(*(resolve(url) for url in self.grpc_urls))
        current = list(dict.fromkeys(address for addresses in resolved for address in addresses))
        gone = [self._clients.pop(e) for e in list(self._clients) if e not in current]
        await asyncio.gather(*(client.close() for client in gone))
        return current

    def _client(self, endpoint: str) -> InferenceServerClient:
        if endpoint not in self._clients:
            self._clients[endpoint] = InferenceServerClient(endpoint)
        return self._clients[endpoint]

    async def _forget_if_unreachable(
        self, endpoint: str, client: InferenceServerClient, error: InferenceServerException
    ) -> None:
        # A channel that could not connect waits out gRPC's reconnect backoff (up to two
        # minutes) before it tries again; a new one tries at once, as soon as the replica is back.
        if error.status() == UNREACHABLE and self._clients.get(endpoint) is client:
            await self._clients.pop(endpoint).close()

    async def on_every_triton(self, call: Callable[[str], Awaitable[T]], what: str) -> dict[str, T]:
        """``call(endpoint)`` on every Triton at once; its result per endpoint.

        If some fail, UpstreamUnavailable gives each one's error (which names its Triton, as
        those of :meth:`serve_on` and :meth:`versions_on` do), once all calls have finished:
        the others have done their part. ``what`` says what was tried.
        """
        endpoints = await self.endpoints()
        results = await asyncio.gather(*(call(e) for e in endpoints), return_exceptions=True)
        failed: list[FacerecError] = []
        for result in results:
            if isinstance(result, FacerecError):
                failed.append(result)
            elif isinstance(result, BaseException):
                raise result  # a bug or a cancellation, not a Triton's answer
        if failed:
            errors = "; ".join(error.detail for error in failed)
            raise UpstreamUnavailable(
                f"could not {what} on {len(failed)} of {len(endpoints)} Tritons: {errors}"
            ) from failed[0]
        return {e: r for e, r in zip(endpoints, results, strict=True) if not isinstance(r, BaseException)}

    async def serve_versions(self, model: str, versions: Iterable[str]) -> None:
        """Make exactly ``versions`` of ``model`` loaded on every Triton, and wait until each is ready."""
        wanted = sorted(set(versions), key=int)
        await self.on_every_triton(
            lambda endpoint: self.serve_on(endpoint, model, wanted), f"serve {model} versions {wanted}"
        )

    async def serve_on(self, endpoint: str, model: str, versions: Iterable[str]) -> None:
        """Make exactly ``versions`` of ``model`` loaded on the Triton at ``endpoint``, and ready."""
        wanted = sorted(set(versions), key=int)
        client = self._client(endpoint)
        try:
            current: Any = await client.get_model_config(model, as_json=True, client_timeout=self.timeout_s)
            config = with_versions(current["config"], wanted)
            await client.load_model(model, config=json.dumps(config), client_timeout=LOAD_TIMEOUT_S)
            ready = await asyncio.gather(
                *(client.is_model_ready(model, v, client_timeout=self.timeout_s) for v in wanted)
            )
        except InferenceServerException as error:
            await self._forget_if_unreachable(endpoint, client, error)
            raise UpstreamUnavailable(
                f"Triton {endpoint} could not serve {model} versions {wanted}: {error.message()}"
            ) from error
        if not all(ready):
            missing = [v for v, ok in zip(wanted, ready, strict=True) if not ok]
            raise UpstreamUnavailable(
                f"Triton {endpoint}: {model} versions {missing} not ready after loading"
            )

    async def served_versions(self, model: str) -> dict[str, list[str]]:
        """Per Triton (``ip:port``), the versions of ``model`` it has ready, ascending."""
        return await self.on_every_triton(
            lambda endpoint: self.versions_on(endpoint, model), f"read the versions of {model}"
        )

    async def versions_on(self, endpoint: str, model: str) -> list[str]:
        """The versions of ``model`` the Triton at ``endpoint`` has ready, ascending."""
        client = self._client(endpoint)
        try:
            index: Any = await client.get_model_repository_index(as_json=True, client_timeout=self.timeout_s)
        except InferenceServerException as error:
            await self._forget_if_unreachable(endpoint, client, error)
            raise UpstreamUnavailable(
                f"Triton {endpoint} did not list its models: {error.message()}"
            ) from error
        return sorted(
            (
                m["version"]
                for m in index.get("models", [])
                if m["name"] == model and m.get("state") == "READY"
            ),
            key=int,
        )

    async def drain(self, model: str, version: str, grace_s: float, timeout_s: float = 120.0) -> None:
        """Wait until no Triton has a queued request for that version, then a grace period.

        Every address of the metrics URL's host is read (each replica has its own queue),
        resolved again at each round. One that cannot be read counts as not empty. After
        ``timeout_s`` the drain ends anyway, with a warning: Triton's unload itself waits
        for the requests it is running. The grace covers requests that read the old
        (version, collection) pair just before the switch and have not reached Triton or
        the search service yet.
        """
        deadline = time.monotonic() + timeout_s
        if self.metrics_url:
            async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                waiting = await self._queued(http, self.metrics_url, model, version)
                while waiting and time.monotonic() < deadline:
                    await asyncio.sleep(DRAIN_POLL_S)
                    waiting = await self._queued(http, self.metrics_url, model, version)
            if waiting:
                log.warning(
                    "drain of %s version %s: still waiting after %.0f s, going on: %s",
                    model,
                    version,
                    timeout_s,
                    "; ".join(f"{url}: {why}" for url, why in waiting.items()),
                )
        await asyncio.sleep(grace_s)

    @staticmethod
    async def _queued(http: httpx.AsyncClient, metrics_url: str, model: str, version: str) -> dict[str, str]:
        """Metrics endpoints whose queue for the version is not known to be empty, with why."""
        try:
            urls = await resolve_url(metrics_url)
        except UpstreamUnavailable as error:
            return {metrics_url: error.detail}

        async def queued(url: str) -> str | None:
            try:
                response = await http.get(url)
                response.raise_for_status()
                pending = pending_requests(response.text, model, version)
            except (httpx.HTTPError, ValueError) as error:
                return f"unreadable ({type(error).__name__}: {error})"
            return f"{pending} queued" if pending else None

        found = await asyncio.gather(*(queued(url) for url in urls))
        return {url: why for url, why in zip(urls, found, strict=True) if why}
