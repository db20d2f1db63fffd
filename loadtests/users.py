"""Locust users of the facerec REST API, with answers checked: a wrong person is a failure.

Configuration comes from the environment, because Locust runs these in its own process:

- ``FACEREC_ADMIN_KEY``: API key for the gallery set-up and the traffic (admin can do all).
- ``FACEREC_LOAD_GALLERY``: ``api`` (default) sets the gallery up through the API at test
  start; ``none`` when the target was started with its gallery (the naive baseline).
- ``FACEREC_LOAD_MAX_FAIL_RATIO`` (default 0.05): the run stops, exit code 1, past it.
- ``FACEREC_LOAD_PHOTOS``: directory of the checked photos (default: the test cache).
- ``FACEREC_LOAD_BODY``: ``multipart`` (default) sends each image as a form's file part;
  ``raw`` as the whole request body, ``Content-Type: image/jpeg``.

Scenario files (``loadtests/scenarios/*.py``) import the users they want and add a shape.
"""

from __future__ import annotations

import functools
import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any

import gevent
from locust import FastHttpUser, between, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests.gallery import ensure_gallery
from loadtests.multipart import multipart
from loadtests.probes import Probe, check_recognition, enrolment_probes, photos_dir, recognition_probes

log = logging.getLogger(__name__)

RECOGNIZE = "/v1/recognize"
MIN_REQUESTS_FOR_RATIO = 20
"""Too few requests make the failure ratio noise; the watchdog waits for this many."""


@dataclass
class _Shared:
    """What every user of this process reads: the probes and the gallery's person ids."""

    recognition: list[Probe] = field(default_factory=list)
    enrolment: list[Probe] = field(default_factory=list)
    person_ids: dict[str, int] = field(default_factory=dict)


SHARED = _Shared()


def api_key() -> str:
    return os.environ.get("FACEREC_ADMIN_KEY", "")


BODIES = ("multipart", "raw")


def image_body(filename: str, data: bytes) -> tuple[bytes, str]:
    """→ (body, Content-Type) of an image upload, as ``FACEREC_LOAD_BODY`` says to send it."""
    kind = os.environ.get("FACEREC_LOAD_BODY", "multipart")
    if kind not in BODIES:
        raise ValueError(f"FACEREC_LOAD_BODY={kind!r}: give one of {', '.join(BODIES)}")
    return _encoded(kind, filename, data)


@functools.lru_cache(maxsize=256)
def _encoded(kind: str, filename: str, data: bytes) -> tuple[bytes, str]:
    # Once per probe: encoding the form was a fifth of Locust's CPU, taken from the cores it
    # measures. A probe's bytes object caches its hash, so a hit costs next to nothing.
    if kind == "raw":  # the probes are JPEGs; anything else the server sniffs
        return data, "image/jpeg" if data.startswith(b"\xff\xd8\xff") else "application/octet-stream"
    return multipart("file", filename, data)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    # The watchdog reads aggregated statistics (the master's in a distributed run); the
    # probes are needed where users run.
    if environment.runner is not None and not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_fail_ratio_watchdog, environment)
    if isinstance(environment.runner, MasterRunner):
        return
    photos = photos_dir()
    SHARED.recognition = recognition_probes(photos)
    SHARED.enrolment = enrolment_probes(photos)
    log.info("%d recognition probes, %d enrolment probes", len(SHARED.recognition), len(SHARED.enrolment))


@events.test_start.add_listener
def _gallery(environment: Environment, **_: Any) -> None:
    # Where users run (the single process, or each worker: the set-up is idempotent).
    if (
        isinstance(environment.runner, MasterRunner)
        or os.environ.get("FACEREC_LOAD_GALLERY", "api") == "none"
    ):
        return
    assert environment.host, "give --host"
    SHARED.person_ids = ensure_gallery(environment.host, api_key(), photos_dir())


def _fail_ratio_watchdog(environment: Environment) -> None:
    """Stop the whole run (exit code 1) as soon as too many requests fail."""
    limit = float(os.environ.get("FACEREC_LOAD_MAX_FAIL_RATIO", "0.05"))
    runner = environment.runner
    assert runner is not None
    while True:
        gevent.sleep(1.0)
        total = runner.stats.total
        if total.num_requests >= MIN_REQUESTS_FOR_RATIO and total.fail_ratio > limit:
            log.error("failure ratio %.3f > %.3f: stopping the run", total.fail_ratio, limit)
            environment.process_exit_code = 1
            runner.quit()
            return


class FacerecUser(FastHttpUser):
    abstract = True
    wait_time = between(0.0, 0.05)
    connection_timeout = 10.0
    network_timeout = 120.0

    def recognise(self) -> None:
        probe = random.choice(SHARED.recognition)
        body, content_type = image_body("probe.jpg", probe.data)
        with self.rest(
            "POST",
            RECOGNIZE,
            name=RECOGNIZE,
            data=body,
            headers={"Content-Type": content_type, "X-API-Key": api_key()},
        ) as response:
            assert response.status_code == 200, f"status {response.status_code},"
            check_recognition(response.js, probe.expected)

    def enrol(self) -> None:
        """Add a face to the right person, then delete it again: gallery size stays bounded."""
        probe = random.choice(SHARED.enrolment)
        person_id = SHARED.person_ids[probe.expected]
        body, content_type = image_body("face.jpg", probe.data)
        face_id = None
        with self.rest(
            "POST",
            f"/v1/people/{person_id}/faces?pick=largest",
            name="/v1/people/{id}/faces",
            data=body,
            headers={"Content-Type": content_type, "X-API-Key": api_key()},
        ) as response:
            assert response.status_code == 201, f"status {response.status_code},"
            assert response.js["person_id"] == person_id, f"enrolled onto {response.js['person_id']}"
            face_id = response.js["face_id"]
        if face_id is not None:
            with self.client.request(
                "DELETE",
                f"/v1/faces/{face_id}",
                name="/v1/faces/{id}",
                headers={"X-API-Key": api_key()},
                catch_response=True,
            ) as deleted:
                if deleted.status_code != 204:
                    deleted.failure(f"delete answered {deleted.status_code}")

    def list_people(self) -> None:
        with self.rest(
            "GET", "/v1/people?limit=10", name="/v1/people", headers={"X-API-Key": api_key()}
        ) as r:
            assert r.status_code == 200, f"status {r.status_code},"
            assert r.js["total"] >= 2, "gallery people missing"


class RecogniseUser(FacerecUser):
    """Recognition only: the traffic of the performance report."""

    @task
    def recognise_task(self) -> None:
        self.recognise()


class RecogniseHeavyUser(FacerecUser):
    @task(18)
    def recognise_task(self) -> None:
        self.recognise()

    @task(1)
    def enrol_task(self) -> None:
        self.enrol()

    @task(1)
    def list_task(self) -> None:
        self.list_people()


class EnrolHeavyUser(FacerecUser):
    @task(8)
    def enrol_task(self) -> None:
        self.enrol()

    @task(2)
    def recognise_task(self) -> None:
        self.recognise()


class MixedUser(FacerecUser):
    @task(6)
    def recognise_task(self) -> None:
        self.recognise()

    @task(3)
    def enrol_task(self) -> None:
        self.enrol()

    @task(1)
    def list_task(self) -> None:
        self.list_people()
