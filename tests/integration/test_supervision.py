"""`facerec up` keeps its children up and takes them all with it: real processes, real signals.

Processes of a stack are found by scanning /proc for our data dir in a command line or an
environment (every child inherits `up`'s FACEREC_DATA_DIR, Triton's stubs too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.core.settings import ApiSettings
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.runtime.triton_env import TritonEnvironment
from tests.e2e.flows import best_name, create_person, enrol, recognize
from tests.support import augment
from tests.support.stack import ADMIN_KEY

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent
START_S = 240.0  # Triton, the search service and the API, on a loaded 2-core machine
RESTART_LIMIT_S = 60.0
GONE_S = 20.0


@dataclass(frozen=True)
class StackProcess:
    pid: int
    ppid: int
    command: str

    @property
    def kind(self) -> str:
        # The reaper's command line holds Triton's, so it is looked for first.
        for kind in (
            "triton_python_backend_stub",
            "reaper",
            "tritonserver",
            "valkey-server",
            "search_service",
            "milvus_lite",
        ):
            if kind in self.command:
                return kind
        if "orchestrator.cli.api_worker" in self.command:
            return "worker"
        if "orchestrator.cli worker" in self.command:
            return "job worker"
        return "up" if "orchestrator.cli" in self.command else "other"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone meanwhile, or a kernel thread
        return b""


def _state(stat: bytes) -> tuple[str, int]:
    """The state letter and the parent pid, from a /proc stat line."""
    state, ppid = stat.decode(errors="replace").rsplit(") ", 1)[1].split()[:3:2]
    return state, int(ppid)


def _live_thread(process: Path) -> Path | None:
    """A thread of the process that has not exited, if any.

    A leader whose main thread has exited shows as a zombie while its other threads run on
    (and keep their children): such a process is not gone.
    """
    try:
        threads = list((process / "task").iterdir())
    except OSError:
        return None
    for thread in threads:
        stat = _read(thread / "stat")
        if stat and _state(stat)[0] != "Z":
            return thread
    return None


def processes_of(*markers: str) -> list[StackProcess]:
    """Processes not gone whose command line or environment mentions one of ``markers``."""
    found = []
    needles = [marker.encode() for marker in markers]
    for entry in Path("/proc").iterdir():
        thread = _live_thread(entry) if entry.name.isdigit() else None
        if thread is None:
            continue
        cmdline, environ = _read(thread / "cmdline"), _read(thread / "environ")
        if any(needle in cmdline or needle in environ for needle in needles):
            ppid = _state(_read(entry / "stat") or b"() Z 0")[1]
            found.append(StackProcess(int(entry.name), ppid, cmdline.replace(b"\0", b" ").decode()))
    return found


def alive(pid: int) -> bool:
    return _live_thread(Path(f"/proc/{pid}")) is not None


def free_port_block(size: int = 6) -> int:
    """A port P such that P..P+size-1 are all free on 127.0.0.1 now."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + size > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + size):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError("no block of free ports")


def eventually(
    condition: Callable[[], bool], timeout_s: float, what: str, state: Callable[[], object] = lambda: ""
) -> float:
    """Seconds until ``condition`` held; fails after ``timeout_s``, showing ``state()``."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout_s, f"{what}: not within {timeout_s}s {state()}"
        time.sleep(0.1)
    return time.monotonic() - began


class Up:
    """`python -m orchestrator.cli up` over its own data dir and ports, its output in a file."""

    def __init__(
        self,
        root: Path,
        model_store: ModelStore,
        triton_env: TritonEnvironment,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True)
        # The shared, already fetched models: fetch_models leaves a complete store as it is.
        (self.data_dir / "models").symlink_to(model_store.root.resolve(), target_is_directory=True)
        self.port = free_port_block()
        self.output = root / "up.log"
        keep = {k: v for k, v in os.environ.items() if not k.startswith("FACEREC_")}
        for name in ("DATABASE_URL", "REDIS_URL"):
            keep.pop(name, None)
        self.env = {
            **keep,
            "FACEREC_DATA_DIR": str(self.data_dir),
            "FACEREC_PORT": str(self.port),
            "FACEREC_TRITON__ENV_DIR": str(triton_env.root),
            "FACEREC_ADMIN_KEY": ADMIN_KEY,
            **(env or {}),
        }
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Up:
        with self.output.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", "up"],
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=5.0).status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout_s: float = START_S) -> float:
        def ready() -> bool:
            assert self.popen is not None and self.popen.poll() is None, f"up exited:\n{self.log()[-4000:]}"
            return self.ready()

        return eventually(ready, timeout_s, "the API ready")

    def processes(self) -> list[StackProcess]:
        # valkey-server writes its title over its environment: it is known by its address.
        return processes_of(str(self.data_dir), f"127.0.0.1:{self.port + 5}")

    def of_kind(self, kind: str) -> list[StackProcess]:
        return [p for p in self.processes() if p.kind == kind]

    def one(self, kind: str) -> StackProcess:
        found = self.of_kind(kind)
        assert len(found) == 1, found
        return found[0]

    def signal(self, sig: signal.Signals) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)

    def close(self) -> None:
        """Stop it if a test did not, and kill by pid whatever it left (the test then fails)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for left in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(left.pid, signal.SIGKILL)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": ADMIN_KEY}, timeout=120.0)


@pytest.fixture
def make_up(
    model_store: ModelStore, triton_env: TritonEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Up]]:
    made: list[Up] = []

    def make(env: dict[str, str] | None = None) -> Up:
        made.append(Up(tmp_path_factory.mktemp("up"), model_store, triton_env, env).start())
        return made[-1]

    yield make
    for up in made:
        up.close()


@pytest.fixture(scope="module")
def stack(
    model_store: ModelStore,
    triton_env: TritonEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
    photos: Path,
) -> Iterator[Up]:
    """One `up` with Obama enrolled, for the restarts."""
    up = Up(tmp_path_factory.mktemp("up"), model_store, triton_env).start()
    try:
        print(f"\nup ready in {up.wait_ready():.1f}s")
        with up.client() as client:
            obama = create_person(client, "Barack Obama")
            enrol(client, obama["id"], photos / "obama.jpg")
        yield up
    finally:
        up.close()


def _recognised(up: Up, photos: Path, top_k: int) -> str | None:
    """The name given to obama3.jpg; ``top_k`` differs per call so no answer comes from the cache."""
    with up.client() as client:
        return best_name(recognize(client, photos / "obama3.jpg", top_k=top_k))


def _shm_regions(up: Up) -> set[str]:
    return {p.name for p in Path("/dev/shm").glob(f"facerec-triton-{up.port + 1}-*")}


def test_a_killed_triton_is_restarted_and_its_stubs_go(stack: Up, photos: Path) -> None:
    reaper, triton = stack.one("reaper"), stack.one("tritonserver")
    stubs = [p for p in stack.of_kind("triton_python_backend_stub") if p.ppid == triton.pid]
    regions = _shm_regions(stack)
    assert len(stubs) >= 3 and regions  # at least one per model instance

    os.kill(triton.pid, signal.SIGKILL)
    took = eventually(
        lambda: [p.pid for p in stack.of_kind("tritonserver")] not in ([], [triton.pid]) and stack.ready(),
        RESTART_LIMIT_S,
        "Triton restarted and the API ready",
    )
    print(f"\nTriton SIGKILLed → API ready again in {took:.1f}s")
    assert not [stub.pid for stub in stubs if alive(stub.pid)]
    assert not regions & _shm_regions(stack), "the killed server's shared memory is left"
    # Its reaper dies as it did, and is what `up` sees.
    assert f"tritonserver (pid {reaper.pid}) died with signal SIGKILL" in stack.log()
    # `up` polls Triton's readiness on its own: the API may see Triton ready a moment before.
    eventually(lambda: "tritonserver restarted" in stack.log(), 10.0, "up logs the restart")
    assert _recognised(stack, photos, top_k=2) == "Barack Obama"


def test_ups_job_worker_does_a_job_and_is_restarted_when_killed(stack: Up, photos: Path) -> None:
    def job_done(client: httpx.Client, probe: bytes) -> dict[str, Any]:
        files = [("files", ("probe.jpg", probe, "image/jpeg"))]
        job = client.post("/v1/jobs", data={"kind": "recognize"}, files=files).json()
        eventually(
            lambda: client.get(f"/v1/jobs/{job['job_id']}").json()["state"] == "done",
            RESTART_LIMIT_S,
            "the job",
        )
        return dict(client.get(f"/v1/jobs/{job['job_id']}/items").json()["items"][0])

    obama3 = (photos / "obama3.jpg").read_bytes()
    with stack.client() as client:
        assert job_done(client, augment.with_comment(obama3, "up-1"))["recognised"] == "Barack Obama"
        worker = stack.one("job worker")
        os.kill(worker.pid, signal.SIGKILL)
        eventually(
            lambda: [p.pid for p in stack.of_kind("job worker")] not in ([], [worker.pid]),
            RESTART_LIMIT_S,
            "the job worker restarted",
        )
        assert job_done(client, augment.with_comment(obama3, "up-2"))["recognised"] == "Barack Obama"
    assert f"job worker (pid {worker.pid}) died with signal SIGKILL" in stack.log()


def _kill_until_restarted(up: Up, kind: str, name: str) -> None:
    """SIGKILL the one process of ``kind``; back when another runs and the API is ready,
    with `up` having logged the death under ``name``."""
    killed = up.one(kind)
    os.kill(killed.pid, signal.SIGKILL)
    took = eventually(
        lambda: [p.pid for p in up.of_kind(kind)] not in ([], [killed.pid]) and up.ready(),
        RESTART_LIMIT_S,
        f"{name} restarted and the API ready",
    )
    print(f"\n{name} SIGKILLed → API ready again in {took:.1f}s")
    assert f"{name} (pid {killed.pid}) died with signal SIGKILL" in up.log()


def test_ups_api_worker_is_restarted_when_killed(stack: Up, photos: Path) -> None:
    """Even the one worker of the default (FACEREC_API__WORKERS=1) runs as a child of `up`,
    which starts it again."""
    assert len(stack.of_kind("worker")) == ApiSettings().workers == 1
    _kill_until_restarted(stack, "worker", "orchestrator worker 0")
    assert _recognised(stack, photos, top_k=7) == "Barack Obama"


def test_a_killed_search_service_is_restarted_with_its_collections(stack: Up, photos: Path) -> None:
    _kill_until_restarted(stack, "search_service", "search service")
    assert _recognised(stack, photos, top_k=3) == "Barack Obama"


def test_a_killed_milvus_lite_is_restarted_with_its_collections(
    make_up: Callable[..., Up], photos: Path
) -> None:
    # With the milvus backend and no URI, `up` serves Milvus Lite's file from one child.
    up = make_up({"FACEREC_SEARCH__BACKEND": "milvus"})
    up.wait_ready()
    with up.client() as client:
        obama = create_person(client, "Barack Obama")
        enrol(client, obama["id"], photos / "obama.jpg")
    assert _recognised(up, photos, top_k=2) == "Barack Obama"
    assert not up.of_kind("search_service")
    _kill_until_restarted(up, "milvus_lite", "milvus lite")
    # Ready again means answered: every worker's first call after the restart reconnects at
    # once (gRPC's backoff from the outage is not inherited), so no 503 and never a wrong name.
    for top_k in (3, 4, 5, 6):  # no cached answer; four connections, which the API's workers share
        assert _recognised(up, photos, top_k=top_k) == "Barack Obama"
    up.signal(signal.SIGTERM)
    _assert_all_gone(up, "SIGTERM to up on Milvus")


def _assert_all_gone(up: Up, what: str) -> float:
    took = eventually(
        lambda: not up.processes(), GONE_S, f"every process of the stack gone after {what}", up.processes
    )
    assert not _shm_regions(up), "Triton's shared memory is left"
    print(f"\n{what}: every process gone in {took:.1f}s")
    return took


def _full_stack(up: Up) -> None:
    """One of each, the API's workers, and Triton's stubs (one per model instance).

    Waited for: the API is ready once its first worker is; the others start after it."""
    expected = sorted(
        ["job worker", "reaper", "search_service", "tritonserver", "up", "valkey-server"]
        + ["worker"] * ApiSettings().workers
    )

    def census() -> bool:
        kinds = sorted(p.kind for p in up.processes())
        stubs = kinds.count("triton_python_backend_stub")
        return stubs >= 3 and [k for k in kinds if k != "triton_python_backend_stub"] == expected

    eventually(census, 30.0, "the whole stack running", lambda: sorted(p.kind for p in up.processes()))


def test_a_killed_up_leaves_no_process(make_up: Callable[..., Up]) -> None:
    up = make_up()
    up.wait_ready()
    _full_stack(up)
    up.signal(signal.SIGKILL)
    _assert_all_gone(up, "SIGKILL of up")


def test_sigterm_stops_up_cleanly(make_up: Callable[..., Up]) -> None:
    up = make_up()
    up.wait_ready()
    _full_stack(up)
    began = time.monotonic()
    up.signal(signal.SIGTERM)
    assert up.popen is not None and up.popen.wait(60) == 0, up.log()[-4000:]
    print(f"\nSIGTERM of up: exited 0 in {time.monotonic() - began:.1f}s")
    assert not up.processes() and not _shm_regions(up)
    assert "orchestrator.runtime.supervisor" not in up.log(), "a child was seen dying or restarted"


def test_up_killed_while_triton_loads_leaves_no_process(make_up: Callable[..., Up]) -> None:
    """Triton dies of SIGTERM before it handles it; its stubs go once it is reaped (by init)."""
    up = make_up()
    eventually(lambda: bool(up.of_kind("triton_python_backend_stub")), START_S, "Triton loading its models")
    up.signal(signal.SIGKILL)
    _assert_all_gone(up, "SIGKILL of up while Triton loads")
