"""The edge under overload: fast refusals at the door, and keyed clients served through a flood.

    python -m loadtests.edge

Starts Triton, the search service and the orchestrator on free loopback ports (no cache,
the default 25 MiB body limit, admission limit ``--limit``, by default the service's),
enrols the gallery, then:

1. ``--clients`` (256) clients, each with its own connection made before the clock
   starts, post a ~100 KB JPEG (obama3.jpg, scaled) to /v1/recognize for ``--seconds``
   (20), starting within the first ``--ramp`` (1) s; each sends again once answered, after
   a 503 waiting its Retry-After ±50 % (or ``--pause``).
2. ``--flood-clients`` (64) clients post ``--flood-mb`` (20) MB bodies without a key while
   ``--keyed-clients`` (8) recognise, for ``--seconds``.

The clients of a phase are spread over ``--processes`` (4) load generator processes, each
running its share of every group's clients (64 of the 256) in an event loop and a session
(so a scheduler autogroup) of its own: one loop for all of them ran late by 100-200 ms at
p99, which the clients counted as latency. Every client is a raw HTTP/1.1 connection on a
plain socket (``edge_clients.RawConnection``; httpx clients took a core between them).
Each generator connects its clients, then all start together in the window the parent
sends; the parent merges what they got. In both phases, an observer (a process of its own:
4 connections sending the keyed request one at a time, 50 ms apart) measures what the
server does apart from the load generators' own queueing (printed: how late the worst of
their event loops ran).

Printed: counts and p50/p99 per status (503s split by who refused; phase 1 also from 3 s
on, past the first wave), timeouts and other errors, throughput, the targets (503 p99 <
100 ms; 200 p99 < limit ÷ throughput + 1 s; no timeout; nothing but 200 and problem+json
503, or 401 for the flood; keyed clients served), the orchestrator's peak RSS, the load
generators' CPU (summed) and the load average.
Bounded: a phase stops sending at its deadline; a request gives up after ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.edge_clients import Group, Traffic, generate_load, observed, percentile_ms, raw_request
from loadtests.gallery import ensure_gallery
from loadtests.memory import rss_bytes
from loadtests.multipart import multipart
from loadtests.stack import ADMIN_KEY, Stack, cpu_repository
from orchestrator.core.settings import ApiSettings
from orchestrator.modelrepo.fetch import fetch_models
from tests.support import augment
from tests.support.photos import fetch_photos

ROOT = Path(__file__).resolve().parent.parent
PROBE = ("obama3.jpg", "Barack Obama")
STEADY_AFTER_RAMP_S = 2.0
"""Requests started this long after the ramp are also reported apart, as the steady state:
the first wave of 64 admitted at once moves through the models' batches together."""


def probe_jpeg(photos: Path, target_bytes: int) -> bytes:
    """The probe photo scaled so that its JPEG is as close to ``target_bytes`` as a scale gets."""
    data = (photos / PROBE[0]).read_bytes()
    scales = np.linspace(0.1, 1.0, 91)
    return min((augment.scaled(data, float(s)) for s in scales), key=lambda j: abs(len(j) - target_bytes))


def recognize_traffic(jpeg: bytes, pause: float | None) -> Traffic:
    body, content_type = multipart("file", "probe.jpg", jpeg)
    return Traffic({"X-API-Key": ADMIN_KEY, "content-type": content_type}, body, PROBE[1], pause)


def flood_traffic(megabytes: float) -> Traffic:
    """No key, a body of ``megabytes``: sent whole, whatever the server answers meanwhile."""
    big, content_type = multipart("file", "big.jpg", b"\xff\xd8\xff" + bytes(int(megabytes * 1e6)))
    return Traffic({"content-type": content_type}, big)


@dataclass
class Phase:
    """One phase's groups, the observer, and what the machine did meanwhile."""

    groups: list[tuple[Group, Callable[[], Traffic], int]]
    """Each group, what its clients send and how many they are."""
    observer: Group = field(default_factory=lambda: Group("observer"))
    peak_rss: int = 0
    client_cpu: float = 0.0
    """Cores the load generators used, together."""
    lags: list[list[float]] = field(default_factory=list)
    """How late each load generator's event loop woke up."""


async def watch_rss(pid: int, stop: asyncio.Event) -> int:
    peak = 0
    while not stop.is_set():
        peak = max(peak, rss_bytes(pid))
        await asyncio.sleep(0.25)
    return peak


async def run_phase(stack: Stack, args: argparse.Namespace, phase: Phase) -> None:
    """Every group's clients for ``args.seconds``, spread over ``args.processes`` load
    generators (:func:`generate_load`) that start together once all have connected, each
    client within the first ``args.ramp``; the observer sends the first group's request."""
    spawn = multiprocessing.get_context("spawn")
    processes, pipes = [], []
    for index in range(args.processes):
        shares = [
            (group.name, traffic, clients // args.processes + (index < clients % args.processes))
            for group, traffic, clients in phase.groups
        ]
        pipe, theirs = spawn.Pipe()
        process = spawn.Process(
            target=generate_load, args=(stack.url, shares, args.timeout, args.ramp, theirs), daemon=True
        )
        process.start()
        theirs.close()  # so that a load generator dying is an EOFError here, not a wait forever
        processes.append(process)
        pipes.append(pipe)
    await received(pipes)  # every client connected
    stop = asyncio.Event()
    rss = asyncio.create_task(watch_rss(stack.pids()["orchestrator"], stop))
    # The machine's monotonic clock, which every process shares.
    start = time.monotonic()
    deadline = start + args.seconds
    for pipe in pipes:
        pipe.send((start, deadline, start + args.ramp + STEADY_AFTER_RAMP_S))
    observer = asyncio.create_task(
        observed(stack.url, raw_request(stack.url, phase.groups[0][1]()), deadline)
    )
    for groups, lags, cpu in await received(pipes):
        for (group, _, _), part in zip(phase.groups, groups, strict=True):
            group.merge(part)
        phase.lags.append(lags)
        phase.client_cpu += cpu / args.seconds
    for process in processes:
        process.join()
    phase.observer = await observer
    stop.set()
    phase.peak_rss = await rss


async def received(pipes: list[Connection]) -> list[Any]:
    """The next message from each load generator."""
    return await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in pipes))


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def targets(group: Group, throughput: float, limit: int) -> str:
    shed_p99 = percentile_ms(group.latencies.get(503, []), 99)
    served_p99 = percentile_ms(group.latencies.get(200, []), 99) / 1000
    bound = limit / throughput + 1 if throughput else float("inf")
    clean = set(group.latencies) <= {200, 503} and not group.errors and not group.not_problems
    return (
        f"    targets: 503 p99 {shed_p99:.0f} ms < 100 ms {verdict(shed_p99 < 100)}; "
        f"200 p99 {served_p99:.2f} s < {limit}/{throughput:.1f} + 1 = {bound:.2f} s "
        f"{verdict(served_p99 < bound)}; "
        f"no timeout {verdict(group.timeouts == 0)}; only 200 and problem+json 503 {verdict(clean)}"
    )


def machine(phase: Phase) -> str:
    lag_p99 = max(percentile_ms(lags, 99) for lags in phase.lags)
    lag_max = max(max(lags, default=0) for lags in phase.lags) * 1000
    return (
        f"  orchestrator peak RSS {phase.peak_rss / 2**20:.0f} MiB; load generators "
        f"{phase.client_cpu:.2f} cores in all, the worst of their {len(phase.lags)} loops late by "
        f"p99 {lag_p99:.0f} ms (max {lag_max:.0f}); load average {load_average()}"
    )


def report_overload(phase: Phase, limit: int, seconds: float, ramp: float) -> list[str]:
    group = phase.groups[0][0]
    throughput = (group.served() + phase.observer.served()) / seconds
    steady = Group(f"{group.name}, requests started after {ramp + STEADY_AFTER_RAMP_S:.0f} s")
    steady.latencies, steady.timeouts, steady.errors = group.steady, group.timeouts, group.errors
    return [
        *group.lines(),
        targets(group, throughput, limit),
        *steady.lines()[:-2],  # without the whole run's timeouts and checks, said just above
        targets(steady, throughput, limit),
        *phase.observer.lines(),
        targets(phase.observer, throughput, limit),
        f"  throughput {throughput:.1f} images/s",
        machine(phase),
    ]


def report_flood(phase: Phase) -> list[str]:
    (keyed, _, _), (flooders, _, _) = phase.groups
    served = all(
        g.served() > 0 and set(g.latencies) == {200} and not g.wrong and not g.errors
        for g in (keyed, phase.observer)
    )
    refused = set(flooders.latencies) == {401} and not flooders.errors and not flooders.not_problems
    timeouts = flooders.timeouts + keyed.timeouts + phase.observer.timeouts
    return [
        *flooders.lines(),
        *keyed.lines(),
        *phase.observer.lines(),
        f"    targets: flood answered 401 only {verdict(refused)}; keyed clients served, 200 only "
        f"{verdict(served)}; no timeout {verdict(timeouts == 0)}",
        machine(phase),
    ]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--ramp", type=float, default=1.0, help="clients start within this many seconds")
    parser.add_argument(
        "--limit",
        type=int,
        default=ApiSettings().max_concurrent_images,
        help="FACEREC_API__MAX_CONCURRENT_IMAGES (default: the service's)",
    )
    parser.add_argument("--jpeg-kb", type=float, default=100.0)
    parser.add_argument("--pause", type=float, default=None, help="seconds after a 503 (default Retry-After)")
    parser.add_argument("--flood-clients", type=int, default=64)
    parser.add_argument("--flood-mb", type=float, default=20.0)
    parser.add_argument("--keyed-clients", type=int, default=8)
    parser.add_argument(
        "--processes", type=int, default=4, help="load generator processes, sharing every group's clients"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a request is a timeout")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    fetch_models(args.data_dir / "models")
    photos = fetch_photos(args.data_dir / "testdata")
    jpeg = probe_jpeg(photos, int(args.jpeg_kb * 1000))
    keyed = partial(recognize_traffic, jpeg, args.pause)
    api_env = {
        "FACEREC_API__MAX_CONCURRENT_IMAGES": str(args.limit),
        "FACEREC_API__MAX_BODY_BYTES": str(25 * 1024 * 1024),
    }
    with tempfile.TemporaryDirectory() as work, Stack(Path(work), cpu_repository(), api_env=api_env) as stack:
        ensure_gallery(stack.url, ADMIN_KEY, photos)
        with stack.client() as client:  # warm: the first calls read model metadata
            for _ in range(3):
                client.post("/v1/recognize", files={"file": ("probe.jpg", jpeg)}).raise_for_status()
        pause = "its Retry-After" if args.pause is None else f"{args.pause} s"
        print(f"load average before: {load_average()}")
        print(
            f"phase 1, overload: {args.clients} clients, {len(jpeg) / 1000:.0f} KB JPEG, admission limit "
            f"{args.limit}, {args.seconds:.0f} s (clients start within {args.ramp:.0f} s; after a 503 "
            f"each waits {pause} ±50 %)"
        )
        overload = Phase([(Group(f"{args.clients} clients"), keyed, args.clients)])
        asyncio.run(run_phase(stack, args, overload))
        print("\n".join(report_overload(overload, args.limit, args.seconds, args.ramp)))
        print(
            f"phase 2, flood: {args.flood_clients} clients without a key post {args.flood_mb:.0f} MB "
            f"bodies while {args.keyed_clients} keyed clients recognise, {args.seconds:.0f} s"
        )
        flood = Phase(
            [
                (Group(f"{args.keyed_clients} keyed clients"), keyed, args.keyed_clients),
                (
                    Group(f"{args.flood_clients} clients without a key"),
                    partial(flood_traffic, args.flood_mb),
                    args.flood_clients,
                ),
            ]
        )
        asyncio.run(run_phase(stack, args, flood))
        print("\n".join(report_flood(flood)))


if __name__ == "__main__":
    main()
