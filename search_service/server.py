"""Process entry of the search service: ``run(...)`` and ``python -m search_service``.

Uvicorn turns SIGTERM and SIGINT into a graceful shutdown, which runs the app's
lifespan exit: every collection is snapshotted before the process ends.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError

from search_service.app import create_app
from search_service.settings import SearchSettings


def serve(settings: SearchSettings) -> None:
    """Serve until SIGTERM/SIGINT (blocking)."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(config).run()


def run(
    host: str,
    port: int,
    data_dir: Path,
    *,
    shard: str | None = None,
    device: str | None = None,
    log_level: str | None = None,
    **overrides: Any,
) -> None:
    """Run one search service process (what ``facerec search`` calls).

    ``shard`` is ``"I/N"``; ``device`` is ``auto``, ``cpu``, ``gpu``, ``gpu:N`` or ``gpu-or-cpu``; other
    :class:`SearchSettings` fields may be given as keywords; unset ones come from the
    ``FACEREC_SEARCH_*`` environment or the defaults.
    """
    given: dict[str, Any] = {"host": host, "port": port, "data_dir": Path(data_dir)}
    extra = {"shard": shard, "device": device, "log_level": log_level, **overrides}
    given.update({k: v for k, v in extra.items() if v is not None})
    serve(SearchSettings(**given))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m search_service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--shard", help="I/N: this process owns the ids with id %% N == I")
    parser.add_argument("--device", help="auto (default), cpu, gpu, gpu:N or gpu-or-cpu (may fall back)")
    parser.add_argument("--log-level", help="debug, info (default), warning, error")
    args = parser.parse_args(argv)
    try:
        run(
            args.host,
            args.port,
            args.data_dir,
            shard=args.shard,
            device=args.device,
            log_level=args.log_level,
        )
    except ValidationError as error:
        # Refused settings are the operator's to fix: say which, without a traceback.
        sys.exit(f"search service: invalid settings: {error}")
