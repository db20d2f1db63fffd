"""Short soak: mixed traffic at constant users, with the serving processes' RSS sampled.

``FACEREC_LOAD_WATCH=orchestrator=PID,triton=PID,search=PID`` names the processes (children
included); without it the process listening on the ``--host`` port is watched.
``FACEREC_LOAD_RSS_CSV`` (default ``soak_rss.csv``) receives the samples; the verdict
(flat or not, per process) is logged at the end and written beside it as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust import events
from locust.env import Environment

from loadtests.memory import RssSamples, listening_pid, parse_watch
from loadtests.scenarios.shapes import ConstantShape
from loadtests.users import MixedUser

__all__ = ["MixedUser", "Soak"]

log = logging.getLogger(__name__)
SAMPLE_EVERY_S = 2.0


class Soak(ConstantShape):
    pass


_samples: RssSamples | None = None


def _sampler(samples: RssSamples) -> None:
    while True:
        samples.sample()
        gevent.sleep(SAMPLE_EVERY_S)


@events.test_start.add_listener
def _start(environment: Environment, **_: Any) -> None:
    global _samples
    watched = parse_watch(os.environ.get("FACEREC_LOAD_WATCH", ""))
    if not watched and environment.host:
        pid = listening_pid(urlsplit(environment.host).port or 80)
        if pid is not None:
            watched = {"target": pid}
    if not watched:
        log.warning("no process to watch: give FACEREC_LOAD_WATCH")
        return
    _samples = RssSamples(watched)
    gevent.spawn(_sampler, _samples)


@events.test_stop.add_listener
def _stop(environment: Environment, **_: Any) -> None:
    if _samples is None or not _samples.times:
        return
    path = Path(os.environ.get("FACEREC_LOAD_RSS_CSV", "soak_rss.csv"))
    _samples.write_csv(path)
    verdicts = _samples.verdicts()
    for v in verdicts:
        log.info(
            "RSS %s: %.0f MB → %.0f MB (%+.1f %%): %s",
            v.name,
            v.start_mb,
            v.end_mb,
            100 * v.growth,
            "flat" if v.flat else "GROWING",
        )
    path.with_suffix(".json").write_text(json.dumps([dataclasses.asdict(v) for v in verdicts], indent=2))
