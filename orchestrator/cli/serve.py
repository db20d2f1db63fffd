"""Run the stack or one process kind of it in the foreground: up, triton, search, orchestrator."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType

import psutil
from pydantic import SecretStr

from orchestrator.api.in_flight import InFlightShare
from orchestrator.cli.api_worker import worker_environment
from orchestrator.cli.common import settings_from, with_services
from orchestrator.core.secret_files import SEARCH_TOKEN_FILE, read_or_create_token
from orchestrator.core.settings import Settings
from orchestrator.modelrepo.catalog import SERVED_MODELS
from orchestrator.modelrepo.fetch import fetch_models
from orchestrator.modelrepo.tuning import apply, quiet_cached
from orchestrator.runtime.processes import ManagedProcess, StartError
from orchestrator.runtime.supervisor import Child, Supervisor
from orchestrator.runtime.triton_env import ensure_environment
from orchestrator.runtime.triton_server import TritonPorts, TritonServer

WORKER_START_S = 180.0
"""How long a worker may take to serve: migrations and the gallery's reconciliation run first."""


JOB_WORKER_START_S = 120.0
"""Its start opens the database and the services, as an API worker's does."""


def _triton(settings: Settings, ports: TritonPorts) -> TritonServer:
    """Triton over the data dir's CPU repository; it gets SIGTERM when the thread starting it ends.

    The repository gets this CPU's tuning first (measured on the first start on a CPU model)."""
    store = fetch_models(settings.models_dir)
    tuning = quiet_cached(store.root)
    if tuning is None:
        _tune(settings)
    else:
        apply(store.repository("cpu"), tuning)  # nothing measured, so no process started
    env = ensure_environment(settings.triton_env_dir)
    return TritonServer(
        env,
        (settings.models_dir / "repository" / "cpu").resolve(),
        (settings.logs_dir / "triton.log").resolve(),
        ports,
        list(SERVED_MODELS),
        die_with_parent=True,
    )


def _tune(settings: Settings) -> None:
    """This CPU's tuning measured and applied by a child, so that its worker processes and
    multiprocessing's resource tracker end with it rather than live as long as ``up``."""
    tuner = ManagedProcess("tuner", None, die_with_parent=True)
    command = [sys.executable, "-m", "orchestrator.cli", "models", "tune", "--if-needed"]
    tuner.start([*command, "--data-dir", str(settings.data_dir)])
    try:
        code = tuner.wait_exit()
    finally:
        tuner.stop()
    if code != 0:
        raise StartError(f"tuning the CPU models failed (exit {code}); see above")


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


def _serve(settings: Settings, supervised: bool = False) -> None:
    """The API on ``settings.port``: in this process, or in ``FACEREC_API__WORKERS`` processes
    sharing the port; ``supervised`` (``up``): in worker processes that are restarted if they
    die, even when there is one."""
    if (
        settings.search.backend == "milvus"
        and settings.milvus_uri.endswith(".db")
        and settings.api.workers > 1
    ):
        raise SystemExit(
            f"Milvus Lite ({settings.milvus_uri}) is embedded in the one process that opens it, so it "
            f"cannot serve {settings.api.workers} API workers: set FACEREC_API__WORKERS=1, run `facerec up` "
            "(which serves the file to all its processes), or point FACEREC_SEARCH__MILVUS_URI at a server"
        )
    if settings.api.workers == 1 and not supervised:
        serve_one(settings)
    else:
        _serve_workers(settings)


def serve_one(settings: Settings, in_flight: InFlightShare | None = None) -> None:
    """One process's API server, in the foreground; ``in_flight``: one of several workers
    sharing the port (SO_REUSEPORT) and its admission limit."""
    import uvicorn

    from orchestrator.api.app import create_app
    from orchestrator.api.shutdown import DrainingServer
    from orchestrator.runtime.allocator import keep_freed_memory

    keep_freed_memory()
    app = create_app(settings, in_flight)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        limit_concurrency=settings.api.limit_concurrency,
    )
    sockets = [shared_socket(settings.host, settings.port)] if in_flight else None
    DrainingServer(config, app.state.draining, settings.api.shutdown_drain_s).run(sockets=sockets)


def shared_socket(host: str, port: int) -> socket.socket:
    """A socket bound with SO_REUSEPORT: the kernel spreads new connections over every
    process bound so; uvicorn makes it listen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _serve_workers(settings: Settings) -> None:
    """``settings.api.workers`` worker processes on the one port, each with its share of the
    limits, kept up until this process is stopped (SIGTERM or Ctrl-C), then stopped in turn.

    They run in groups of their own, so the terminal's Ctrl-C reaches only this process,
    which stops each with one SIGTERM (a second one would cut its drain short). Their logs
    are this process's.
    """
    signal.signal(signal.SIGTERM, _raise_stop)
    share = settings.model_copy(update={"api": settings.api.worker_share()})
    command = [sys.executable, "-m", "orchestrator.cli.api_worker"]
    count = settings.api.workers
    try:
        with tempfile.TemporaryDirectory(prefix="facerec-workers-") as shared, Supervisor() as workers:
            in_flight = Path(shared) / "in-flight"
            InFlightShare.create(in_flight, count)
            for i in range(count):
                name = f"orchestrator worker {i}"
                worker = ManagedProcess(name, None, own_group=True, die_with_parent=True)
                env = {**os.environ, **worker_environment(share, InFlightShare(in_flight, i, count))}
                start = partial(_start_worker, worker, command, env, settings.port)
                # The first one up shows a mistake at once; the others come up, or retry, by themselves.
                (workers.keep if i else workers.start)(Child(worker.name, worker, start))
            print(f"{count} orchestrator workers on port {settings.port}", flush=True)
            while True:
                signal.pause()
    except (KeyboardInterrupt, _Stop):
        pass


def _start_worker(worker: ManagedProcess, command: list[str], env: dict[str, str], port: int) -> None:
    worker.start(command, env=env).wait_until(partial(_listening, worker, port), WORKER_START_S)


def _listening(worker: ManagedProcess, port: int) -> bool:
    """Whether the worker listens on ``port``: uvicorn listens once the app has started."""
    if worker.pid is None:
        return False
    try:
        connections = psutil.Process(worker.pid).net_connections("tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)


def _local_search_token(settings: Settings) -> SecretStr:
    """FACEREC_SEARCH_TOKEN if set, else the one kept in the data dir (made at the first start),
    so nothing local is left open."""
    if settings.search_token is None:
        settings.search_token = SecretStr(read_or_create_token(settings.data_dir / SEARCH_TOKEN_FILE))
    return settings.search_token


def _search_service(settings: Settings) -> tuple[ManagedProcess, Callable[[], ManagedProcess]]:
    """The search service beside the API, sharing a token with it, and how to start it until ready.

    The token (:func:`_local_search_token`) travels in the child's environment: a command
    line is visible to every user of the machine.
    """
    token = _local_search_token(settings)
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
    env = {**os.environ, "FACEREC_SEARCH_TOKEN": token.get_secret_value()}
    health = f"{settings.search_service_urls[0]}/health"
    return search, lambda: search.start(command, env=env).wait_http(health, 60.0)


def _milvus_lite(settings: Settings) -> tuple[ManagedProcess, Callable[[], ManagedProcess]]:
    """Milvus Lite's file served on the search service's port, for the API workers and the job
    worker alike (one process only may open the file), and how to start it until it listens.

    From here on ``settings`` point at it; it checks the same token as the search service.
    """
    token = _local_search_token(settings)
    served = ManagedProcess(
        "milvus lite", settings.logs_dir / "milvus.log", own_group=True, die_with_parent=True
    )
    command = [
        sys.executable,
        "-m",
        "orchestrator.runtime.milvus_lite",
        "--data",
        settings.milvus_uri,
        "--port",
        str(settings.search_port),
    ]
    env = {**os.environ, "FACEREC_SEARCH_TOKEN": token.get_secret_value()}
    settings.search.milvus_uri = f"http://127.0.0.1:{settings.search_port}"
    listening = partial(_port_open, settings.search_port)
    return served, lambda: served.start(command, env=env).wait_until(listening, 60.0)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _start_search(settings: Settings, children: Supervisor) -> None:
    """What answers searches for ``up``: the FAISS search service, Milvus Lite's file served
    to every process, or nothing here (a Milvus server at ``FACEREC_SEARCH__MILVUS_URI``)."""
    if settings.search.backend == "faiss":
        search, start = _search_service(settings)
        children.start(Child("search service", search, start))
        print(f"search service: {settings.search_service_urls[0]}", flush=True)
    elif settings.milvus_uri.endswith(".db"):
        lite_file = settings.milvus_uri
        served, start = _milvus_lite(settings)
        children.start(Child(served.name, served, start))
        print(f"search: Milvus Lite {lite_file} at {settings.milvus_uri}", flush=True)
    else:
        _local_search_token(settings)
        print(f"search: Milvus at {settings.milvus_uri}", flush=True)


def start_search_service(settings: Settings, stack: contextlib.ExitStack) -> ManagedProcess:
    """The search service beside the API, ready, sharing a token with it (stopped by ``stack``)."""
    search, start = _search_service(settings)
    stack.callback(search.stop)
    return start()


def _start_job_worker(worker: ManagedProcess, settings: Settings) -> None:
    """``facerec worker`` beside the API, on the settings ``up`` made (the local Valkey, the
    search token), which travel in its environment, as the search service's token does."""
    assert settings.redis_url is not None and settings.search_token is not None
    env = {
        **os.environ,
        "FACEREC_DATA_DIR": str(settings.data_dir),
        "FACEREC_PORT": str(settings.port),
        "FACEREC_REDIS_URL": settings.redis_url,
        "FACEREC_SEARCH_TOKEN": settings.search_token.get_secret_value(),
        "FACEREC_SEARCH__BACKEND": settings.search.backend,
        **({"FACEREC_SEARCH__MILVUS_URI": settings.search.milvus_uri} if settings.search.milvus_uri else {}),
    }
    command = [sys.executable, "-m", "orchestrator.cli", "worker"]
    worker.start(command, env=env).wait_until(lambda: " ready." in worker.log_tail(), JOB_WORKER_START_S)


def cmd_up(args: argparse.Namespace) -> int:
    """Triton, the search service (or Milvus Lite's server), a local Valkey (unless REDIS_URL is set),
    a job worker and the API, in the foreground.

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
            _start_search(settings, children)
            if settings.redis_url is None:
                valkey = LocalValkey(settings.data_dir / "cache", settings.cache_port)
                children.start(Child("valkey-server", valkey, valkey.start))
                settings.redis_url = valkey.url
                print(f"cache: local Valkey at {valkey.url}", flush=True)
            worker = ManagedProcess(
                "job worker", settings.logs_dir / "worker.log", own_group=True, die_with_parent=True
            )
            # Kept, not waited for: the API serves while the worker comes up (and jobs queue).
            children.keep(Child(worker.name, worker, partial(_start_job_worker, worker, settings)))
            print(f"facerec API: http://{settings.host}:{settings.port} (docs at /docs)", flush=True)
            _serve(settings, supervised=True)
    except (KeyboardInterrupt, _Stop):
        print("stopped", file=sys.stderr)
    return 0


def cmd_orchestrator(args: argparse.Namespace) -> int:
    _serve(with_services(settings_from(args), args))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from search_service.server import run

    settings = settings_from(args)
    run(settings.host, args.port or settings.search_port, settings.data_dir / "search", shard=args.shard)
    return 0
