"""Run the stack or one process kind of it in the foreground: up, triton, search, orchestrator."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

from pydantic import SecretStr

from orchestrator.cli.common import settings_from
from orchestrator.core.secret_files import SEARCH_TOKEN_FILE, read_or_create_token
from orchestrator.core.settings import Settings
from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from orchestrator.modelrepo.fetch import fetch_models
from orchestrator.runtime.processes import ManagedProcess
from orchestrator.runtime.supervisor import Child, Supervisor
from orchestrator.runtime.triton_env import ensure_environment
from orchestrator.runtime.triton_server import TritonPorts, TritonServer


def _triton(settings: Settings, ports: TritonPorts) -> TritonServer:
    """Triton over the data dir's CPU repository; it gets SIGTERM when the thread starting it ends."""
    fetch_models(settings.models_dir)
    env = ensure_environment(settings.triton_env_dir)
    return TritonServer(
        env,
        (settings.models_dir / "repository" / "cpu").resolve(),
        (settings.logs_dir / "triton.log").resolve(),
        ports,
        [spec.name for spec in DEFAULT_MODELS],
        die_with_parent=True,
    )


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _run_foreground(server: TritonServer) -> int:
    """Wait until Triton dies or the user stops us, then stop it."""
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        code = server.wait_exit()
        print(f"tritonserver exited with {code}:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Stop):
        print("stopping", file=sys.stderr)
        return 0
    finally:
        server.stop()


def cmd_triton(args: argparse.Namespace) -> int:
    """Triton alone and not supervised: what runs it (a container runtime) restarts it and counts."""
    settings = settings_from(args)
    server = _triton(settings, TritonPorts.beside(settings.port))
    server.start_ready()
    _print_triton(server)
    return _run_foreground(server)


def _print_triton(server: TritonServer) -> None:
    print(f"Triton ready: gRPC {server.grpc_url}, HTTP {server.http_url}, metrics {server.metrics_url}")
    print(f"models: {', '.join(server.models)}; log: {server.log_path}", flush=True)


def _serve(settings: Settings) -> None:
    import uvicorn

    from orchestrator.api.app import create_app
    from orchestrator.api.shutdown import DrainingServer
    from orchestrator.runtime.allocator import keep_freed_memory

    keep_freed_memory()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        limit_concurrency=settings.api.limit_concurrency,
    )
    DrainingServer(config, app.state.draining, settings.api.shutdown_drain_s).run()


def _search_service(settings: Settings) -> tuple[ManagedProcess, Callable[[], ManagedProcess]]:
    """The search service beside the API, sharing a token with it, and how to start it until ready.

    The token is FACEREC_SEARCH_TOKEN if set, else the one kept in the data dir (made at
    the first start), so nothing local is left open. It travels in the child's
    environment: a command line is visible to every user of the machine.
    """
    if settings.search_token is None:
        settings.search_token = SecretStr(read_or_create_token(settings.data_dir / SEARCH_TOKEN_FILE))
    # A group of its own, so the terminal's Ctrl-C reaches only `up`, which stops it in order.
    search = ManagedProcess(
        "search service", settings.logs_dir / "search.log", own_group=True, die_with_parent=True
    )
    command = [
        sys.executable,
        "-m",
        "search_service",
        "--port",
        str(settings.search_port),
        "--data-dir",
        str(settings.data_dir / "search"),
    ]
    env = {**os.environ, "FACEREC_SEARCH_TOKEN": settings.search_token.get_secret_value()}
    health = f"{settings.search_service_urls[0]}/health"
    return search, lambda: search.start(command, env=env).wait_http(health, 60.0)


def start_search_service(settings: Settings, stack: contextlib.ExitStack) -> ManagedProcess:
    """The search service beside the API, ready, sharing a token with it (stopped by ``stack``)."""
    search, start = _search_service(settings)
    stack.callback(search.stop)
    return start()


def cmd_up(args: argparse.Namespace) -> int:
    """Triton, the search service, a local Valkey (unless REDIS_URL is set) and the API, in the foreground.

    The servers are children kept up by a Supervisor, and they die with this process.
    """
    from orchestrator.runtime.local_valkey import LocalValkey

    settings = settings_from(args)
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    # Unwinds the supervisor on SIGTERM too; uvicorn, which handles it while it serves,
    # raises it again once it has shut down.
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        with Supervisor() as children:
            server = _triton(settings, TritonPorts.beside(settings.port))
            children.start(Child("tritonserver", server, server.start_ready))
            _print_triton(server)
            search, start_search = _search_service(settings)
            children.start(Child("search service", search, start_search))
            print(f"search service: {settings.search_service_urls[0]}", flush=True)
            if settings.redis_url is None:
                valkey = LocalValkey(settings.data_dir / "cache", settings.cache_port)
                children.start(Child("valkey-server", valkey, valkey.start))
                settings.redis_url = valkey.url
                print(f"cache: local Valkey at {valkey.url}", flush=True)
            print(f"facerec API: http://{settings.host}:{settings.port} (docs at /docs)", flush=True)
            _serve(settings)
    except (KeyboardInterrupt, _Stop):
        print("stopped", file=sys.stderr)
    return 0


def cmd_orchestrator(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.triton_url:
        settings.triton.url = args.triton_url
    if args.search_url:
        settings.search_urls = args.search_url
    if args.redis_url:
        settings.redis_url = args.redis_url
    _serve(settings)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from search_service.server import run

    settings = settings_from(args)
    run(settings.host, args.port or settings.search_port, settings.data_dir / "search", shard=args.shard)
    return 0
