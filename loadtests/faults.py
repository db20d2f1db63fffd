"""Measure what survives faults: two replicas, a killed rollout runner, Triton, the search
service, a rolling restart, under recognition and enrolment traffic.

    python -m loadtests.faults --calm-s 20

The scenario is ``tests.support.faults`` (also run, with short calm periods, by
``tests/e2e/test_faults.py``): two orchestrator processes on a scratch PostgreSQL database,
Triton over a private copy of the model repository, the search service and Redis
(``REDIS_URL``, else the local one). Prints the summary as JSON: answers by status, wrong
answers, failures outside the moments a process was down, and per fault how long until both
replicas served again and what failed meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

from orchestrator.modelrepo.fetch import fetch_models
from orchestrator.modelrepo.importer import derive
from orchestrator.runtime.triton_env import ensure_environment
from tests.support import faults
from tests.support.databases import SERVERS, scratch_database
from tests.support.photos import fetch_photos

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calm-s", type=float, default=20.0, help="undisturbed traffic between faults")
    parser.add_argument("--out", type=Path, help="also write the summary (JSON) here")
    args = parser.parse_args()

    data_dir = Path(os.environ.get("FACEREC_DATA_DIR", ROOT / "var")).resolve()
    store = fetch_models(data_dir / "models")
    version = str(derive(store, "rotated"))
    env = ensure_environment(data_dir / "triton-env")
    photos = fetch_photos(data_dir / "testdata")
    cache = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    with (
        tempfile.TemporaryDirectory(prefix="facerec-faults-") as tmp,
        scratch_database(SERVERS["postgresql"]) as database,
        faults.running_cluster(Path(tmp), store, env, database, cache) as cluster,
    ):
        seeded = faults.seed(cluster.replicas[0].url, photos)
        record = asyncio.run(faults.run(cluster, version, seeded, calm_s=args.calm_s))
        missing = asyncio.run(faults.not_found(cluster.replicas[1].url, record.enrolled, seeded.people))
    summary = {**faults.summary(record), "acknowledged_enrolments_not_found": len(missing)}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
