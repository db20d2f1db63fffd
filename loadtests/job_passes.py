"""The passes of the jobs benchmark (``loadtests/jobs_bench.py``): images through
``POST /v1/recognize`` at N concurrent clients, or as one recognize job done by
``facerec worker`` processes. Every answer is checked against the person in its probe;
around each pass, the CPU each process spent, what else the machine did meanwhile, and
Triton's batching are sampled.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from loadtests import triton_stats
from loadtests.cpu_usage import cpu_seconds
from loadtests.edge_clients import RawConnection, Traffic, percentile_ms, raw_request
from loadtests.multipart import multipart
from loadtests.probes import Probe, check_recognition
from tests.support import augment
from tests.support.stack import ADMIN_KEY, Stack

POLL_S = 0.25
JOB_TIMEOUT_S = 1200.0
MODELS = ("face_detector", "face_landmarks", "arcface")
BENCH = "bench"
"""This process alone (the load generator, or the job's uploader and poller)."""


def tagged(probes: Sequence[Probe], count: int, tag: str) -> list[Probe]:
    """``count`` probes cycled from ``probes``, each with bytes of its own (a JPEG comment
    naming ``tag`` and its place), so that no cache has seen them."""
    chosen = [probes[n % len(probes)] for n in range(count)]
    return [
        Probe(f"{tag}-{n:03d}", augment.with_comment(p.data, f"{tag}-{n}"), p.expected)
        for n, p in enumerate(chosen)
    ]


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (steal too: this VM's cores running
    someone else)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)


def own_seconds() -> float:
    """CPU seconds of this process alone (not its children: the stack)."""
    mine = psutil.Process().cpu_times()
    return float(mine.user + mine.system)


def redis_pid(url: str) -> dict[str, int]:
    """The local Redis server of ``url``, to watch as ``redis`` (it is shared: a test run
    using it meanwhile counts there)."""
    port = str(urlsplit(url).port or 6379)
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "redis-server" and any(port in a for a in process.info["cmdline"] or []):
            return {"redis": process.pid}
    return {}


@dataclass(frozen=True)
class Sample:
    """CPU seconds so far of each watched process tree and of this process, the machine's busy
    CPU seconds, and Triton's counters."""

    processes: dict[str, float]
    machine: float
    triton: dict[str, triton_stats.ModelCounters]
    at: float

    @classmethod
    def take(cls, stack: Stack, pids: Mapping[str, int]) -> Sample:
        return cls(
            {**cpu_seconds(pids), BENCH: own_seconds()},
            busy_seconds(),
            triton_stats.sample(stack.triton.http_url),
            time.monotonic(),
        )


@dataclass
class Pass:
    """One pass over the images, checked, with what it cost."""

    label: str
    images: int
    seconds: float
    """First request to last answer; for a job, its ``started_at`` to its ``finished_at``."""
    wrong: list[str] = field(default_factory=list)
    """Images not answered with their person."""
    cached: list[str] = field(default_factory=list)
    """Images answered from the cache: Redis, not the models, did that work."""
    cpu_ms: dict[str, float] = field(default_factory=dict)
    """CPU ms per image of each process (a job's workers summed as ``workers``)."""
    foreign_cores: float = 0.0
    """Cores that processes other than these used meanwhile: another run on the machine."""
    batch: dict[str, float] = field(default_factory=dict)
    """Triton's average batch size per model."""
    figures: dict[str, float] = field(default_factory=dict)
    """What else the pass measured (latency percentiles; a job's submit time, slot use, …)."""
    window_s: float = 0.0
    """Between the CPU samples: for a job, from its upload to the poll that saw it end."""

    def check(self, answer: dict[str, Any], probe: Probe, note: str = "") -> None:
        try:
            check_recognition(answer, probe.expected)
        except AssertionError as error:
            self.wrong.append(f"{probe.label}{note}: {error}")
            return
        if answer.get("cached"):
            self.cached.append(f"{probe.label}{note}")

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    def costs(self, before: Sample, after: Sample) -> None:
        used = {name: after.processes[name] - before.processes.get(name, 0.0) for name in after.processes}
        ours = sum(used.values())
        grouped: dict[str, float] = defaultdict(float)
        for name, seconds in used.items():
            grouped["workers" if name.startswith("worker") else name] += seconds
        self.cpu_ms = {name: 1000 * s / self.images for name, s in grouped.items()}
        self.window_s = after.at - before.at
        self.foreign_cores = max(0.0, (after.machine - before.machine - ours) / self.window_s)
        self.batch = {
            model: stats.average_batch
            for model, stats in triton_stats.between(before.triton, after.triton).items()
            if model in MODELS
        }


async def _recognize_all(url: str, probes: Sequence[Probe], clients: int, result: Pass) -> list[float]:
    """Each client a keep-alive connection of its own, connected before the clock starts,
    sending requests made beforehand: an httpx client spent ~13 ms of CPU an image here,
    a third of a core taken from the stack it measures."""
    requests = []
    for probe in probes:
        body, content_type = multipart("file", f"{probe.label}.jpg", probe.data)
        headers = {"X-API-Key": ADMIN_KEY, "content-type": content_type}
        requests.append((probe, raw_request(url, Traffic(headers, body))))
    todo = iter(requests)  # shared by the clients: each takes the next image when answered
    latencies: list[float] = []

    async def client(connection: RawConnection) -> None:
        try:
            for probe, request in todo:
                sent = time.perf_counter()
                try:
                    reply = await connection.send(request)
                    latencies.append(time.perf_counter() - sent)
                    assert reply.status == 200, f"{reply.status} {reply.body[:300]!r}"
                    result.check(reply.json(), probe)
                except (OSError, AssertionError, ValueError) as error:
                    result.wrong.append(f"{probe.label}: {error!r}")
        finally:
            connection.close()

    connections = [RawConnection(url) for _ in range(clients)]
    await asyncio.gather(*(c.connect() for c in connections))
    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    result.seconds = time.perf_counter() - started
    return latencies


def recognize_pass(stack: Stack, pids: Mapping[str, int], probes: Sequence[Probe], clients: int) -> Pass:
    """``probes`` through ``POST /v1/recognize`` at ``clients``; ``pids``: the processes to watch."""
    before = Sample.take(stack, pids)
    result = Pass(f"/v1/recognize, {clients} clients", len(probes), math.nan)
    latencies = asyncio.run(_recognize_all(stack.url, probes, clients, result))
    result.costs(before, Sample.take(stack, pids))
    result.figures = {"p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99)}
    return result


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def submit(client: httpx.Client, probes: Sequence[Probe]) -> int:
    files = [("files", (f"{p.label}.jpg", p.data, "image/jpeg")) for p in probes]
    answer = client.post("/v1/jobs", data={"kind": "recognize", "priority": "normal"}, files=files)
    if answer.status_code != 202:
        raise RuntimeError(f"POST /v1/jobs: {answer.status_code} {answer.text[:500]}")
    return int(answer.json()["job_id"])


def wait_ended(client: httpx.Client, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(POLL_S)
    raise TimeoutError(f"job {job_id} not ended within {JOB_TIMEOUT_S:.0f} s")


def items_of(client: httpx.Client, job_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = client.get(f"/v1/jobs/{job_id}/items", params={"limit": 1000, "offset": len(items)})
        got = page.raise_for_status().json()
        items += got["items"]
        if not got["items"] or len(items) >= got["total"]:
            return items


def _check_items(result: Pass, items: Sequence[dict[str, Any]], probes: Sequence[Probe]) -> None:
    if len(items) != len(probes):
        result.wrong.append(f"{len(items)} items for {len(probes)} images")
    for item in items:
        probe = probes[item["index"]]
        attempts = f" (attempt {item['attempts']})" if item["attempts"] != 1 else ""
        if item["state"] != "done":
            result.wrong.append(f"{probe.label}{attempts}: {item['state']}: {item['error']}")
        elif item["recognised"] != probe.expected:
            result.wrong.append(f"{probe.label}{attempts}: recognised {item['recognised']!r}")
        else:
            result.check(item["result"], probe, attempts)


def job_pass(stack: Stack, pids: Mapping[str, int], concurrency: int, probes: Sequence[Probe]) -> Pass:
    """One job of ``probes``, done by the running workers, each running ``concurrency`` items at
    once; ``pids``: the processes to watch, the workers' named ``worker…``."""
    workers = [name for name in pids if name.startswith("worker")]
    with stack.client() as client:
        before = Sample.take(stack, pids)
        submitted = time.time()  # wall clock, as the job's times (same machine)
        job_id = submit(client, probes)
        accepted_s = time.time() - submitted
        job = wait_ended(client, job_id)
        after = Sample.take(stack, pids)
        items = items_of(client, job_id)
    started, finished = _at(job["started_at"]), _at(job["finished_at"])
    count = len(workers)
    result = Pass(
        f"job, {count} worker{'s' if count > 1 else ''} × {concurrency}",
        len(probes),
        finished - started,
    )
    _check_items(result, items, probes)
    result.costs(before, after)
    ran = [i for i in items if i["started_at"] and i["finished_at"]]
    held = sum(_at(i["finished_at"]) - _at(i["started_at"]) for i in ran)
    recognising = sum(i["duration_ms"] or 0.0 for i in ran) / 1000
    slots = count * concurrency * result.seconds
    by_worker = Counter(i["worker"] for i in items)
    result.figures = {
        "from_submit_s": finished - submitted,
        "accepted_s": accepted_s,
        "first_start_s": started - submitted,
        "slot_use": held / slots,
        "recognising": recognising / slots,
        "item_p50_ms": statistics.median(i["duration_ms"] for i in ran) if ran else float("nan"),
        "retried": sum(i["attempts"] > 1 for i in items),
        "busiest_worker_share": max(by_worker.values()) / len(items) if items else float("nan"),
    }
    return result
