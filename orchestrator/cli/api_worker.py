"""One of ``FACEREC_API__WORKERS`` orchestrator processes on one port:
``python -m orchestrator.cli.api_worker``, started by ``facerec orchestrator`` or ``facerec up``.

It serves with the settings its parent was given, the command line's and what ``up`` set
itself (the local cache's URL, the search token), with its share of the limits, and where
it counts its images in flight beside the others. They come pickled in its environment, so
nothing is parsed twice or lost on the way; the variable is removed before anything else
runs.
"""

from __future__ import annotations

import base64
import os
import pickle

from orchestrator.api.in_flight import InFlightShare
from orchestrator.core.settings import Settings

WORKER_SETTINGS = "FACEREC_WORKER_SETTINGS"


def worker_environment(settings: Settings, in_flight: InFlightShare) -> dict[str, str]:
    """What a worker's environment needs on top of its parent's to serve with ``settings``."""
    return {WORKER_SETTINGS: base64.b64encode(pickle.dumps((settings, in_flight))).decode()}


def main() -> None:
    from orchestrator.cli.serve import serve_one
    from orchestrator.core.logging import configure as configure_logging

    settings, in_flight = pickle.loads(base64.b64decode(os.environ.pop(WORKER_SETTINGS)))
    if not isinstance(settings, Settings) or not isinstance(in_flight, InFlightShare):
        raise SystemExit(f"{WORKER_SETTINGS} does not hold a worker's settings")
    configure_logging(True)
    serve_one(settings, in_flight)


if __name__ == "__main__":
    main()
