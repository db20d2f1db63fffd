"""The fault scenario: what the deployment files promise, tried on one machine.

Two orchestrator replicas (separate processes) on one PostgreSQL, one Triton over a
repository of its own, the search service and Redis. Clients recognise and enrol
throughout while, in turn: a rollout starts and the replica running it is SIGKILLed in
the middle of re-embedding (and started again, as Kubernetes would); Triton is SIGKILLed
and started again; the search service too; then both replicas are restarted one after
the other. Every answer is recorded with the time it came, so failures can be held
against the moments a process was down.

Shared by ``tests/e2e/test_faults.py`` (the assertions) and ``loadtests.faults`` (the
measurement with longer phases).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import httpx

from orchestrator.db.tables import ROLLOUT_FINISHED
from orchestrator.modelrepo.catalog import ARCFACE, SERVED_MODELS
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.runtime.triton_env import TritonEnvironment
from orchestrator.runtime.triton_server import TritonPorts, TritonServer
from tests.e2e.flows import create_person, enrol
from tests.support import augment
from tests.support.processes import ChildProcess, SearchServiceProcess
from tests.support.stack import ADMIN_KEY

HEADERS = {"X-API-Key": ADMIN_KEY}
RECOGNISERS = 5
ENROLLERS = 3
LEASE_S = 3.0


def private_repository(source: Path, dest: Path) -> Path:
    """A copy of a model repository that rollouts may write their version policy into.

    Model files are hard links (nothing writes them); configs are real copies, so the
    shared repository's policy never changes.
    """
    shutil.copytree(source, dest, copy_function=os.link)
    for config in dest.glob("*/config.pbtxt"):
        text = config.read_text()
        config.unlink()
        config.write_text(text)
    return dest


@dataclass
class Answer:
    kind: str  # recognize, enrol
    status: int  # 0: no answer (the connection broke)
    at: float  # perf_counter when answered
    replica: int
    sent: float = 0.0  # perf_counter when sent
    routable: bool = True  # the balancer held the replica ready when it sent the request
    retry_after: bool = False
    wrong: str | None = None


@dataclass
class Event:
    name: str
    began: float
    recovered: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.recovered is None else round(self.recovered - self.began, 2)


@dataclass
class Enrolled:
    person: str
    face_id: int
    image: bytes


@dataclass
class Record:
    answers: list[Answer] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    enrolled: list[Enrolled] = field(default_factory=list)
    rollout: dict[str, Any] = field(default_factory=dict)


class Cluster:
    def __init__(
        self, root: Path, triton: TritonServer, repository: Path, database_url: str, cache_url: str
    ) -> None:
        self.root = root
        self.triton = triton
        self.search = SearchServiceProcess(root / "search", log_dir=root / "logs")
        env: dict[str, str | None] = {
            "FACEREC_DATA_DIR": str(root),
            "FACEREC_TRITON__URL": triton.grpc_url,
            "FACEREC_TRITON__METRICS_URL": triton.metrics_url,
            "FACEREC_TRITON__REPOSITORY": str(repository),
            "FACEREC_TRITON__TIMEOUT_S": "30",
            "FACEREC_SEARCH_URLS": json.dumps([self.search.url]),
            "FACEREC_SEARCH_TOKEN": self.search.token,
            "FACEREC_ADMIN_KEY": ADMIN_KEY,
            "DATABASE_URL": database_url,
            "REDIS_URL": cache_url,
            "FACEREC_REDIS_URL": None,
            "FACEREC_ROLLOUT__BATCH": "1",
            "FACEREC_ROLLOUT__LEASE_S": str(LEASE_S),
            "FACEREC_API__SHUTDOWN_DRAIN_S": "3",
            # A replica is one process, as a pod is: the scenario kills and restarts it by pid.
            "FACEREC_API__WORKERS": "1",
        }
        args = ["-m", "orchestrator.cli", "orchestrator", "--port", "{port}"]
        self.replicas = [
            ChildProcess(f"orchestrator-{i}", args, root / "logs", env, "/health/ready") for i in range(2)
        ]

    def start(self) -> Cluster:
        self.search.start().wait_ready()
        # One at a time, as a Deployment's first rollout: the first migrates the database.
        for replica in self.replicas:
            replica.start().wait_ready(120)
        return self

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        self.search.stop()


@contextmanager
def running_cluster(
    root: Path, store: ModelStore, env: TritonEnvironment, database_url: str, cache_url: str
) -> Iterator[Cluster]:
    """Triton over a private copy of the store's CPU repository, then the cluster; stopped after."""
    repository = private_repository(store.repository("cpu"), root / "repository")
    models = list(SERVED_MODELS)
    triton = TritonServer(env, repository, root / "triton.log", TritonPorts.free(), models)
    with triton:
        cluster = Cluster(root, triton, repository, database_url, cache_url)
        try:
            yield cluster.start()
        finally:
            cluster.stop()


@dataclass
class Seed:
    people: dict[str, int]
    bases: dict[str, bytes]
    """The photo each person's enrolments during the run are made from."""
    probes: list[tuple[str, bytes]]
    """(expected name, image) recognised throughout."""


def seed(url: str, photos: Path) -> Seed:
    """Two people with 14 faces each, enrolled before the traffic begins."""
    bases = {
        "Barack Obama": (photos / "obama2.jpg").read_bytes(),
        "Joe Biden": (photos / "biden.jpg").read_bytes(),
    }
    people: dict[str, int] = {}
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60.0) as client:
        for name, base in bases.items():
            people[name] = create_person(client, name)["id"]
            for factor in (0.45, 0.55, 0.65, 0.75, 0.85, 0.95, 1.0):
                for quality in (60, 90):
                    enrol(client, people[name], augment.reencoded(augment.scaled(base, factor), quality))
    obama3 = (photos / "obama3.jpg").read_bytes()
    probes = [
        ("Barack Obama", obama3),
        ("Joe Biden", augment.reencoded(bases["Joe Biden"], 50)),
        ("Barack Obama", augment.scaled(obama3, 0.6)),
    ]
    return Seed(people, bases, probes)


class Balancer:
    """What a Service in front of the replicas does: requests go to ready replicas, in turn;
    a refused connection goes to the next one.

    Readiness is the deployment's (``deploy/k8s/orchestrator.yaml``): a replica is probed
    on its own every ``probe_s`` (faster than the deployment, to fit the drain the tests
    use), turns unready after ``failure_threshold`` failed probes in a row and ready after
    one that passes. A replica being stopped on purpose leaves the rotation
    ``propagation_s`` after its stop began, as a terminating pod leaves a Service's
    endpoints; the drain covers that delay, and the probe, which fails while draining,
    covers a balancer without an endpoints controller. With no ready replica, where a
    Service would refuse, requests still go in turn, and their answers say so.
    """

    def __init__(
        self, cluster: Cluster, probe_s: float = 0.5, failure_threshold: int = 2, propagation_s: float = 0.5
    ) -> None:
        self.clients = [
            httpx.AsyncClient(base_url=r.url, headers=HEADERS, timeout=60.0) for r in cluster.replicas
        ]
        self.ready = [True] * len(self.clients)
        self.leaving = [False] * len(self.clients)
        self.probe_s = probe_s
        self.failure_threshold = failure_threshold
        self.propagation_s = propagation_s
        self._turn = count()
        self._probing = [asyncio.create_task(self._probe(i)) for i in range(len(self.clients))]

    async def _probe(self, replica: int) -> None:
        url = f"{self.clients[replica].base_url}health/ready"
        failures = 0
        async with httpx.AsyncClient(timeout=1.0) as http:
            while True:
                try:
                    passed = (await http.get(url)).status_code == 200
                except httpx.TransportError:
                    passed = False  # no answer within a second counts as a failed probe
                failures = 0 if passed else failures + 1
                self.ready[replica] = failures < self.failure_threshold
                await asyncio.sleep(self.probe_s)

    async def stopping(self, replica: int) -> None:
        """A replica's stop has begun: it leaves the rotation once the news has spread."""
        await asyncio.sleep(self.propagation_s)
        self.leaving[replica] = True

    def replaced(self, replica: int) -> None:
        """The replica's new process runs: its probe decides from now on."""
        self.leaving[replica] = False

    def routable(self, replica: int) -> bool:
        return self.ready[replica] and not self.leaving[replica]

    async def send(self, method: str, path: str, **kwargs: Any) -> tuple[int, bool, httpx.Response | None]:
        """The replica that answered, whether it was ready when sent, and its answer (None: the
        connection broke with the request in it)."""
        first = next(self._turn) % len(self.clients)
        order = [(first + i) % len(self.clients) for i in range(len(self.clients))]
        order.sort(key=lambda replica: not self.routable(replica))  # ready ones first, in turn
        for replica in order:
            routable = self.routable(replica)
            try:
                return replica, routable, await self.clients[replica].request(method, path, **kwargs)
            except httpx.ConnectError:
                continue  # nothing listens there: never reached a replica, try the next
            except httpx.TransportError:
                return replica, routable, None
        return first, False, None

    async def aclose(self) -> None:
        for probing in self._probing:
            probing.cancel()
        await asyncio.gather(*self._probing, return_exceptions=True)
        for client in self.clients:
            await client.aclose()


def _answer(kind: str, sent: float, routed: tuple[int, bool, httpx.Response | None]) -> Answer:
    replica, routable, response = routed
    answer = Answer(kind, 0, time.perf_counter(), replica, sent, routable)
    if response is not None:
        answer.status = response.status_code
        answer.retry_after = "retry-after" in response.headers
    return answer


async def recogniser(
    balancer: Balancer, probes: list[tuple[str, bytes]], stop: asyncio.Event, record: Record, n: int
) -> None:
    for i in count(n):
        if stop.is_set():
            return
        expected, image = probes[i % len(probes)]
        sent = time.perf_counter()
        routed = await balancer.send(
            "POST", "/v1/recognize", files={"file": ("p.jpg", augment.with_comment(image, f"r{n}-{i}"))}
        )
        answer = _answer("recognize", sent, routed)
        response = routed[2]
        if response is not None and response.status_code == 200:
            answer.wrong = wrong_answer(response.json(), expected)
        record.answers.append(answer)


def wrong_answer(body: dict[str, Any], expected: str) -> str | None:
    """Why an answer is wrong for a probe of ``expected``, or None."""
    if not body["faces"]:
        return "no face found"
    face = body["faces"][0]
    best = face["matches"][0] if face["matches"] else {}
    if face["decision"] != "match" or best.get("name") != expected:
        return f"{face['decision']}: {best.get('name')} {best.get('similarity')}"
    return None


async def enroller(
    balancer: Balancer,
    people: dict[str, int],
    bases: dict[str, bytes],
    stop: asyncio.Event,
    record: Record,
    n: int,
) -> None:
    names = sorted(people)
    for i in count():
        if stop.is_set():
            return
        name = names[(n + i) % len(names)]
        # A scale of its own: each enrolled image is a different face crop, findable as itself.
        image = augment.scaled(bases[name], 0.5 + ((n * 1000 + i) % 997) / 2000)
        sent = time.perf_counter()
        routed = await balancer.send(
            "POST", f"/v1/people/{people[name]}/faces", files={"file": ("e.jpg", image)}
        )
        record.answers.append(_answer("enrol", sent, routed))
        response = routed[2]
        if response is not None and response.status_code == 201:
            record.enrolled.append(Enrolled(name, response.json()["face_id"], image))


async def serving(balancer: Balancer, probe: bytes, timeout_s: float = 120.0) -> float:
    """Wait until both replicas answer a recognition; the time they did."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        statuses = []
        for client in balancer.clients:
            try:
                statuses.append(
                    (await client.post("/v1/recognize", files={"file": ("p.jpg", probe)})).status_code
                )
            except httpx.TransportError:
                statuses.append(0)
        if statuses == [200, 200]:
            return time.perf_counter()
        await asyncio.sleep(0.2)
    raise TimeoutError("the stack did not serve again")


async def rollout_with_a_killed_runner(
    cluster: Cluster, balancer: Balancer, version: str, record: Record
) -> None:
    """Start a rollout on replica 0, SIGKILL it mid-re-embedding, start it again; follow to the end."""
    runner = balancer.clients[0]
    started = await runner.post("/v1/models/rollouts", json={"version": version})
    if started.status_code != 202:
        raise RuntimeError(f"rollout: {started.status_code} {started.text}")
    rollout = started.json()
    path = f"/v1/models/rollouts/{rollout['rollout_id']}"
    while not (rollout["state"] == "reembedding" and rollout["progress"] > 0):
        if rollout["state"] in ROLLOUT_FINISHED:
            raise RuntimeError(f"the rollout ended before it could be interrupted: {rollout}")
        await asyncio.sleep(0.02)
        rollout = (await runner.get(path)).json()
    event = Event("SIGKILL of the replica running the rollout", time.perf_counter())
    record.events.append(event)
    await asyncio.to_thread(cluster.replicas[0].kill)
    record.rollout["killed_at"] = {
        "state": rollout["state"],
        "progress": rollout["progress"],
        "owner": rollout["owner"],
    }
    await asyncio.to_thread(lambda: cluster.replicas[0].start().wait_ready(120))
    event.recovered = time.perf_counter()
    deadline = time.perf_counter() + 180
    other = balancer.clients[1]
    while rollout["state"] not in ROLLOUT_FINISHED and time.perf_counter() < deadline:
        await asyncio.sleep(0.2)
        rollout = (await other.get(path)).json()
    record.rollout["final"] = rollout
    record.rollout["took_over_s"] = round(time.perf_counter() - event.began, 2)


async def kill_and_restart(
    name: str, kill: Any, restart: Any, balancer: Balancer, probe: bytes, record: Record
) -> None:
    event = Event(name, time.perf_counter())
    record.events.append(event)
    await asyncio.to_thread(kill)
    await asyncio.to_thread(restart)
    event.recovered = await serving(balancer, probe)


def sigkill(pid: int | None) -> None:
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


async def rolling_restart(cluster: Cluster, balancer: Balancer, probe: bytes, record: Record) -> None:
    for i, replica in enumerate(cluster.replicas):
        event = Event(f"rolling restart of replica {i}", time.perf_counter())
        record.events.append(event)
        leaving = asyncio.create_task(balancer.stopping(i))
        await asyncio.to_thread(replica.stop)
        await leaving
        await asyncio.to_thread(lambda r=replica: r.start().wait_ready(120))
        balancer.replaced(i)
        event.recovered = await serving(balancer, probe)


async def run(cluster: Cluster, version: str, seeded: Seed, calm_s: float = 3.0) -> Record:
    """The whole scenario; traffic runs from before the first fault until after the last,
    with ``calm_s`` of undisturbed traffic between faults."""
    people, bases, probes = seeded.people, seeded.bases, seeded.probes
    record = Record()
    balancer = Balancer(cluster)
    stop = asyncio.Event()
    probe = probes[0][1]
    clients = [asyncio.create_task(recogniser(balancer, probes, stop, record, n)) for n in range(RECOGNISERS)]
    clients += [
        asyncio.create_task(enroller(balancer, people, bases, stop, record, n)) for n in range(ENROLLERS)
    ]
    try:
        await asyncio.sleep(calm_s)
        await rollout_with_a_killed_runner(cluster, balancer, version, record)
        await asyncio.sleep(calm_s)
        triton = cluster.triton

        def restart_triton() -> None:
            triton.stop()  # reaps it and kills what is left of its process group (the stubs)
            triton.start()
            triton.wait_ready()
            # Read at once, before any orchestrator could load anything: what it took from disk.
            index = httpx.post(f"{triton.http_url}/v2/repository/index", json={"ready": True}).json()
            record.rollout["served_by_restarted_triton"] = sorted(
                m["version"] for m in index if m["name"] == ARCFACE.name and m.get("state") == "READY"
            )

        await kill_and_restart(
            "SIGKILL of Triton", lambda: sigkill(triton.pid), restart_triton, balancer, probe, record
        )
        await asyncio.sleep(calm_s)
        search = cluster.search
        await kill_and_restart(
            "SIGKILL of the search service",
            search.kill,
            lambda: search.start().wait_ready(),
            balancer,
            probe,
            record,
        )
        await asyncio.sleep(calm_s)
        await rolling_restart(cluster, balancer, probe, record)
        await asyncio.sleep(calm_s)
    finally:
        stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
        await balancer.aclose()
    return record


def failures_outside(record: Record, slack_s: float = 1.0) -> list[Answer]:
    """Failed answers that came while no process was down (nor just recovering)."""
    windows = [(e.began, (e.recovered or float("inf")) + slack_s) for e in record.events]
    return [
        a
        for a in record.answers
        if a.status not in (200, 201) and not any(begin <= a.at <= end for begin, end in windows)
    ]


async def not_found(url: str, enrolled: list[Enrolled], people: dict[str, int]) -> list[str]:
    """Acknowledged enrolments that are not stored, or whose image is not recognised as its person.

    Answers name each person once, by the best of its faces, so a face is checked to be
    stored through the person's faces; that the index holds every stored face is the
    gallery's agreement check (``/health/detailed``).
    """
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=60.0) as client:
        stored: set[int] = set()
        for person in people.values():
            faces = (await client.get(f"/v1/people/{person}/faces")).json()
            stored.update(face["face_id"] for face in faces["items"])
        gate = asyncio.Semaphore(4)

        async def check(face: Enrolled) -> str | None:
            if face.face_id not in stored:
                return f"face {face.face_id}: not stored"
            async with gate:
                response = await client.post("/v1/recognize", files={"file": ("e.jpg", face.image)})
            if response.status_code != 200:
                return f"face {face.face_id}: {response.status_code}"
            why = wrong_answer(response.json(), face.person)
            return None if why is None else f"face {face.face_id}: {why}"

        return [why for why in await asyncio.gather(*(check(f) for f in enrolled)) if why]


def follow(client: httpx.Client, rollout_id: int, timeout_s: float = 180.0) -> dict[str, Any]:
    """Poll a rollout until it has finished; its last record."""
    deadline = time.perf_counter() + timeout_s
    while True:
        rollout: dict[str, Any] = client.get(f"/v1/models/rollouts/{rollout_id}").json()
        if rollout["state"] in ROLLOUT_FINISHED or time.perf_counter() > deadline:
            return rollout
        time.sleep(0.2)


def failed_during(record: Record, event: Event, slack_s: float = 1.0) -> dict[str, int]:
    """Failed answers by status while ``event``'s process was down."""
    end = (event.recovered or float("inf")) + slack_s
    failed: dict[str, int] = {}
    for answer in record.answers:
        if answer.status not in (200, 201) and event.began <= answer.at <= end:
            key = f"{answer.kind} {answer.status or 'no answer'}"
            failed[key] = failed.get(key, 0) + 1
    return failed


def timeline(record: Record, answers: list[Answer]) -> list[str]:
    """``answers`` placed against the events, for a failure's message."""
    start = record.events[0].began if record.events else 0.0
    lines = [
        f"{e.name}: {e.began - start:+.2f} .. {(e.recovered or 0) - start:+.2f} s" for e in record.events
    ]
    for a in answers:
        state = "ready" if a.routable else "not ready"
        lines.append(
            f"{a.kind} {a.status or 'no answer'} from replica {a.replica} ({state} when sent): "
            f"{a.sent - start:+.2f} .. {a.at - start:+.2f} s"
        )
    return lines


def summary(record: Record) -> dict[str, Any]:
    by_status: dict[str, int] = {}
    for answer in record.answers:
        key = f"{answer.kind} {answer.status or 'no answer'}"
        by_status[key] = by_status.get(key, 0) + 1
    return {
        "answers": len(record.answers),
        "by_status": dict(sorted(by_status.items())),
        "wrong": sum(1 for a in record.answers if a.wrong),
        "503_without_retry_after": sum(1 for a in record.answers if a.status == 503 and not a.retry_after),
        "failed_while_nothing_was_down": len(failures_outside(record)),
        "sent_with_no_replica_ready": sum(1 for a in record.answers if not a.routable),
        "acknowledged_enrolments": len(record.enrolled),
        "events": [
            {"name": e.name, "serving_again_after_s": e.seconds, "failed": failed_during(record, e)}
            for e in record.events
        ],
        "rollout": record.rollout,
    }
