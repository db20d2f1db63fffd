"""The clients of the edge measurement (``loadtests.edge``) and what each group of them got."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

PROBLEM_JSON = "application/problem+json"


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(seconds, q) * 1000) if seconds else float("nan")


@dataclass
class Group:
    """What one group of clients got: latency per status, timeouts, other failures."""

    name: str
    latencies: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    shed_by: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    """503 latencies by who refused: the door, the pixel budget, or an upstream (Triton, search)."""
    not_problems: int = 0
    """Error answers whose body was not problem+json (uvicorn's own plain-text 503)."""
    wrong: int = 0
    """200s that did not name the expected person first."""
    timeouts: int = 0
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    checks_answers: bool = True
    """Whether answers were checked (content type, the person named), not only timed."""
    steady_from: float = 0.0
    """Monotonic time after which a request counts in :attr:`steady` too (past the start-up)."""
    steady: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))

    def served(self) -> int:
        return len(self.latencies.get(200, []))

    def merge(self, other: Group) -> None:
        """Add what ``other`` (the same group's clients in another process) got."""
        for status, seconds in other.latencies.items():
            self.latencies[status] += seconds
        for source, seconds in other.shed_by.items():
            self.shed_by[source] += seconds
        for status, seconds in other.steady.items():
            self.steady[status] += seconds
        for name, count in other.errors.items():
            self.errors[name] += count
        self.not_problems += other.not_problems
        self.wrong += other.wrong
        self.timeouts += other.timeouts

    def lines(self) -> list[str]:
        def row(label: str, seconds: list[float]) -> str:
            p50, p99 = percentile_ms(seconds, 50), percentile_ms(seconds, 99)
            return f"{label}: {len(seconds):6d}   p50 {p50:8.1f} ms   p99 {p99:8.1f} ms"

        out = [f"  {self.name}:"]
        for status in sorted(self.latencies):
            out.append("    " + row(str(status), self.latencies[status]))
            if status == 503:
                out += ["      " + row(source, shed) for source, shed in sorted(self.shed_by.items())]
        out.append(f"    timeouts: {self.timeouts}   other errors: {dict(self.errors) or 0}")
        if self.checks_answers:
            out.append(
                f"    errors not as problem+json: {self.not_problems}   200s naming another: {self.wrong}"
            )
        return out


@dataclass(frozen=True)
class Traffic:
    """What one kind of client sends, and how it behaves after a 503."""

    headers: dict[str, str]
    body: bytes
    expected: str | None = None
    """The person a 200 must name first."""
    pause: float | None = None
    """Seconds to wait after a 503 (±50 % jitter); None: its Retry-After."""


@dataclass(frozen=True)
class Reply:
    """An answer as the clients need it."""

    status: int
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def refused_by(reply: Reply) -> str:
    """Who answered a 503, from its problem's detail."""
    try:
        detail = str(reply.json().get("detail", ""))
    except ValueError:
        return "not problem+json"
    if "images in flight" in detail:
        return "door"
    if "decoding this image" in detail:
        return "pixel budget"
    return "upstream"


class RawConnection:
    """One keep-alive HTTP/1.1 connection on a plain socket, for requests whose bytes are made
    once: sent from a memoryview (a 20 MB body is not copied), the answer's status line and
    few headers parsed by hand. About 0.1 ms of CPU an answer where an httpx client spent
    ~1.5 ms (and a streamed upload more per chunk), so 64 of them in one loop measure the
    server, not their own queue. After a failed upload it still reads the answer: the server
    closes the connection on a large refused body."""

    IDLE_S = 4.0
    """Reconnect after this long idle: the server's keep-alive closes at 5 s, and a request
    racing that close would fail for the client's sake, not the server's."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.sock: socket.socket | None = None
        self.received = bytearray()
        self.used = 0.0

    async def connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.get_running_loop().sock_connect(sock, self.address)
        except BaseException:
            sock.close()
            raise
        self.sock, self.used = sock, time.monotonic()
        self.received.clear()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def send(self, request: bytes) -> Reply:
        if self.sock is None or time.monotonic() - self.used > self.IDLE_S:
            self.close()
            await self.connect()
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        try:
            # Answered and closed before the whole body went, the answer may still be there.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await loop.sock_sendall(self.sock, memoryview(request))
            head = await self._until(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await self._exactly(int(headers.get("content-length", 0)))
        except BaseException:
            self.close()  # a half-read answer leaves the connection unusable
            raise
        self.used = time.monotonic()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Reply(int(status_line.split(" ", 2)[1]), headers, body)

    async def _more(self) -> None:
        assert self.sock is not None
        chunk = await asyncio.get_running_loop().sock_recv(self.sock, 1 << 16)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self.received += chunk

    async def _until(self, end: bytes) -> bytes:
        while (at := self.received.find(end)) < 0:
            await self._more()
        head = bytes(self.received[:at])
        del self.received[: at + len(end)]
        return head

    async def _exactly(self, n: int) -> bytes:
        while len(self.received) < n:
            await self._more()
        body = bytes(self.received[:n])
        del self.received[:n]
        return body


class RawClient:
    """A :class:`RawConnection` sending one request (its bytes), giving up after ``timeout``."""

    def __init__(self, url: str, request: bytes, timeout: float) -> None:
        self.connection = RawConnection(url)
        self.request = request
        self.timeout = timeout

    async def send(self) -> Reply:
        async with asyncio.timeout(self.timeout):
            return await self.connection.send(self.request)


async def client_loop(
    client: RawClient, traffic: Traffic, group: Group, start_in: float, deadline: float
) -> None:
    """One client on its own connection: send, wait for the answer, send again, until the deadline."""
    await asyncio.sleep(start_in)
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            reply = await client.send()
        except TimeoutError:
            group.timeouts += 1
            continue
        except OSError as error:
            group.errors[type(error).__name__] += 1
            await asyncio.sleep(0.1)
            continue
        elapsed = time.perf_counter() - started
        group.latencies[reply.status].append(elapsed)
        if time.monotonic() - elapsed >= group.steady_from:
            group.steady[reply.status].append(elapsed)
        if reply.status >= 400 and not reply.headers.get("content-type", "").startswith(PROBLEM_JSON):
            group.not_problems += 1
        if reply.status == 200 and traffic.expected is not None:
            faces = reply.json()["faces"]
            if not faces or not faces[0]["matches"] or faces[0]["matches"][0]["name"] != traffic.expected:
                group.wrong += 1
        if reply.status == 503:
            group.shed_by[refused_by(reply)].append(elapsed)
            pause = float(reply.headers.get("retry-after", 1)) if traffic.pause is None else traffic.pause
            # Jittered, as clients that back off should: the same pause for all would send
            # every refused client back in one wave.
            await asyncio.sleep(pause * random.uniform(0.5, 1.5))


def raw_request(url: str, traffic: Traffic) -> bytes:
    """The traffic's request as HTTP/1.1 bytes."""
    body = traffic.body
    host = url.removeprefix("http://")
    head = "".join(f"{name}: {value}\r\n" for name, value in traffic.headers.items())
    start = f"POST /v1/recognize HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n"
    return (start + head + "\r\n").encode() + body


async def observe(url: str, request: bytes, group: Group, deadline: float, interval: float) -> None:
    """One request at a time on a :class:`RawConnection`, ``interval`` apart.

    Run in a process of its own (:func:`observed`), sharing no loop with the clients: what it
    sees is what the server did.
    """
    connection = RawConnection(url)
    try:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            reply = await connection.send(request)
            group.latencies[reply.status].append(time.perf_counter() - started)
            await asyncio.sleep(interval)
    finally:
        connection.close()


OBSERVERS = 4
"""Connections of the observer process, each one request at a time."""


async def observed(url: str, request: bytes, deadline: float, interval: float = 0.05) -> Group:
    """:data:`OBSERVERS` × :func:`observe` in a child process until ``deadline`` (the machine's
    monotonic clock, which every process shares)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loadtests.edge_clients",
        url,
        str(deadline),
        str(interval),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate(request)
    name = f"observer (a process of its own; {OBSERVERS} raw HTTP/1.1 connections, requests 50 ms apart)"
    group = Group(name, checks_answers=False)
    for status, seconds in json.loads(out)["latencies"].items():
        group.latencies[int(status)] = seconds
    return group


async def loop_lag(deadline: float, lags: list[float], tick: float = 0.05) -> None:
    """How late this process's event loop wakes up: its own share of every latency it measures."""
    while time.monotonic() < deadline:
        started = time.perf_counter()
        await asyncio.sleep(tick)
        lags.append(time.perf_counter() - started - tick)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Share = tuple[str, Callable[[], Traffic], int]
"""A group's name, what its clients send (built in the load generator, so that a 20 MB body is
not pickled to each) and how many of its clients one load generator runs."""


def generate_load(
    url: str, shares: list[Share], request_timeout: float, ramp: float, parent: Connection
) -> None:
    """A load generator process: connects its share of every group's clients, says so, runs them
    in the window ``(start, deadline, steady_from)`` the parent then sends, and sends back its
    groups, its loop's lateness and the CPU seconds it used meanwhile."""
    # A session of its own is a scheduler autogroup of its own (Linux): in the parent's, the
    # load generators shared one group's CPU against the server's processes (each in a session
    # of its own), each waited for a core 13 s of the 20, and their loops ran late by p99 ~250 ms.
    os.setsid()
    parent.send(asyncio.run(generate(url, shares, request_timeout, ramp, parent)))


async def generate(
    url: str, shares: list[Share], request_timeout: float, ramp: float, parent: Connection
) -> tuple[list[Group], list[float], float]:
    """Each simulated client has a :class:`RawClient` of its own. All are made and connected
    before the clock starts: 256 connects at once take the load generator half a second,
    which would count as the first requests' latency. They drop an idle connection before
    the server's keep-alive does, so no request races that close.
    """
    groups = [Group(name) for name, _, _ in shares]
    loops: list[tuple[RawClient, Traffic, Group]] = []
    for group, (_, traffic_of, clients) in zip(groups, shares, strict=True):
        traffic = traffic_of()
        request = raw_request(url, traffic)  # one copy of a 20 MB body for all the group's clients
        loops += [(RawClient(url, request, request_timeout), traffic, group) for _ in range(clients)]
    try:
        await asyncio.gather(*(client.connection.connect() for client, _, _ in loops))
        parent.send("connected")
        start, deadline, steady_from = await asyncio.to_thread(parent.recv)
        for group in groups:
            group.steady_from = steady_from
        lags: list[float] = []
        cpu = cpu_seconds()
        await asyncio.gather(
            loop_lag(deadline, lags),
            *(
                client_loop(
                    client, traffic, group, start + random.uniform(0, ramp) - time.monotonic(), deadline
                )
                for client, traffic, group in loops
            ),
        )
        return groups, lags, cpu_seconds() - cpu
    finally:
        for client, _, _ in loops:
            client.connection.close()


def main() -> None:
    """``python -m loadtests.edge_clients URL DEADLINE INTERVAL`` < request: the observer."""
    url, deadline, interval = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    group, request = Group("observer"), sys.stdin.buffer.read()

    async def all_of_them() -> None:
        await asyncio.gather(*(observe(url, request, group, deadline, interval) for _ in range(OBSERVERS)))

    asyncio.run(all_of_them())
    print(json.dumps({"latencies": group.latencies}))


if __name__ == "__main__":
    main()
