"""Recognition under enrol-and-delete traffic: an enrolled person is never answered "unknown".

The soak scenario in small: fixed probes of two enrolled people are recognised by several
clients at once while one client per person enrols a temporary face of that person and
deletes it again, over and over. Every probe is one the calibration test separates, so
any answer other than a match for its person is a service error (issue 20).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.runtime.triton_server import TritonServer
from tests.e2e.flows import create_person, enrol
from tests.support import augment
from tests.support.stack import Stack, sqlite_url

pytestmark = pytest.mark.integration

RUN_S = 45.0
RECOGNISERS = 4
CHURNERS_PER_PERSON = 2


@pytest.fixture(scope="module")
def churn_stack(triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # No cache: every answer is computed, which is where the race lived.
    root = tmp_path_factory.mktemp("mixed")
    with Stack(root, triton_server, sqlite_url(root), None) as running:
        yield running


def _probes(photos: Path) -> list[tuple[str, bytes]]:
    obama2, obama3, biden = ((photos / n).read_bytes() for n in ("obama2.jpg", "obama3.jpg", "biden.jpg"))
    return [
        ("Barack Obama", obama3),
        ("Barack Obama", augment.scaled(obama2, 0.5)),
        ("Joe Biden", augment.scaled(biden, 0.6)),
    ]


def test_enrolled_people_are_found_while_others_enrol_and_delete(churn_stack: Stack, photos: Path) -> None:
    with churn_stack.client() as client:
        people = {name: create_person(client, name)["id"] for name in ("Barack Obama", "Joe Biden")}
        enrol(client, people["Barack Obama"], photos / "obama.jpg")
        enrol(client, people["Joe Biden"], photos / "biden.jpg")
    temporary = {
        "Barack Obama": augment.reencoded((photos / "obama2.jpg").read_bytes(), 40),
        "Joe Biden": augment.reencoded((photos / "biden.jpg").read_bytes(), 40),
    }
    probes = _probes(photos)
    deadline = time.monotonic() + RUN_S
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    churned: Counter[str] = Counter()
    lock = threading.Lock()

    def recognise(worker: int) -> None:
        with churn_stack.client() as client:
            for n in itertools.count():
                if time.monotonic() > deadline:
                    return
                expected, data = probes[(worker + n) % len(probes)]
                response = client.post(
                    "/v1/recognize",
                    files={"file": ("probe.jpg", augment.with_comment(data, f"{worker}-{n}"))},
                )
                with lock:
                    if response.status_code != 200:
                        outcomes["error"] += 1
                        failures.append(f"{expected}: {response.status_code} {response.text[:200]}")
                        continue
                    verdict = _verdict(response.json(), expected)
                    outcomes[verdict] += 1
                    if verdict != "right":
                        failures.append(f"{expected}: {verdict} {response.json()['faces'][:1]}")

    def churn(name: str) -> None:
        with churn_stack.client() as client:
            while time.monotonic() <= deadline:
                face = enrol(client, people[name], temporary[name])
                assert client.delete(f"/v1/faces/{face['face_id']}").status_code == 204
                with lock:
                    churned[name] += 1

    def guarded(work: Callable[..., None], *args: Any) -> threading.Thread:
        def run() -> None:
            try:
                work(*args)
            except Exception as error:  # a failed enrolment or a transport error fails the test
                with lock:
                    failures.append(f"{work.__name__}{args}: {error!r}")

        return threading.Thread(target=run)

    threads = [guarded(recognise, w) for w in range(RECOGNISERS)]
    threads += [guarded(churn, name) for name in people for _ in range(CHURNERS_PER_PERSON)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RUN_S + 120)
    assert not failures, f"{dict(outcomes)} while churning {dict(churned)}; first: {failures[:5]}"
    assert min(churned[name] for name in people) >= 10, f"too little enrol-and-delete: {dict(churned)}"
    assert outcomes["right"] >= 50, f"too few recognitions: {dict(outcomes)}"


def _verdict(answer: dict[str, Any], expected: str) -> str:
    faces = answer["faces"]
    if not faces:
        return "no face"
    first = faces[0]
    if first["decision"] != "match":
        return "unknown"
    return "right" if first["matches"][0]["name"] == expected else "wrong"
