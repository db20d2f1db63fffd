"""``make gpu-check`` without a GPU: its arguments, prerequisite checks on a fake machine,
perf_analyzer's runs through a stand-in, the steps' bookkeeping and the report."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loadtests import gpu_check, gpu_prereqs, gpu_steps, perf_analyzer
from loadtests.gpu_prereqs import Gpu, Machine, parse_gpus
from loadtests.gpu_serving import PROJECT, ComposeStack, LocalTriton, Serving
from loadtests.gpu_steps import Section, StepFailure, run_step
from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from orchestrator.modelrepo.repository import model_config, render

pytestmark = pytest.mark.unit

NVIDIA_SMI = "NVIDIA H100 80GB HBM3, 560.35.03, 81559, 9.0\n"
RUNTIMES = '{"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"}}'
# perf_analyzer 2.51's -f report, as it wrote one against this project's CPU Triton.
PERF_CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
    "2,63.9837,30,673,2082,80,27823,481,3,29250,37645,38829,67912\n"
)


def fake_machine(
    present: Sequence[str] = ("nvidia-smi", "docker", "perf_analyzer", "ldd", "getfacl"),
    outputs: dict[str, tuple[int, str]] | None = None,
    faiss_gpus: int = 1,
    paths: dict[str, str] | None = None,
) -> Machine:
    answers = {
        "nvidia-smi": (0, NVIDIA_SMI),
        "docker compose": (0, "Docker Compose version v2.29.7"),
        "docker info": (0, RUNTIMES),
        "ldd": (0, "\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n"),
        "getfacl": (0, "".join(f"# file: {m.name}\nuser::rwx\nuser:10001:rwx\n" for m in DEFAULT_MODELS)),
        **(outputs or {}),
    }

    def which(name: str) -> str | None:
        return (paths or {}).get(name) or (f"/usr/bin/{name}" if name in present else None)

    def run(command: Sequence[str]) -> tuple[int, str]:
        two = " ".join(command[:2])
        return answers[two] if two in answers else answers[command[0]]

    return Machine(which=which, run=run, faiss_gpus=lambda: faiss_gpus)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A GPU repository as `facerec models fetch` writes it, weights left empty."""
    root = tmp_path / "models" / "repository" / "gpu"
    for spec in DEFAULT_MODELS:
        (root / spec.name / "1").mkdir(parents=True)
        (root / spec.name / "1" / "model.onnx").write_bytes(b"")
        (root / spec.name / "config.pbtxt").write_text(render(model_config(spec, "gpu")))
    return root


def test_by_default_every_step_runs_at_batch_1_to_64() -> None:
    args = gpu_check.parse_args([])
    assert args.steps == ("drift", "flow", "perf", "rollout", "search")
    assert args.batches == (1, 2, 4, 8, 16, 32, 64)
    assert args.serve == "auto" and args.perf_analyzer == ["perf_analyzer"]


def test_steps_and_the_perf_analyzer_command_are_parsed(capsys: pytest.CaptureFixture[str]) -> None:
    args = gpu_check.parse_args(
        ["--steps", "perf,flow", "--perf-analyzer", "docker run --rm --net host sdk:24.10 perf_analyzer"]
    )
    assert args.steps == ("perf", "flow")
    assert args.perf_analyzer == ["docker", "run", "--rm", "--net", "host", "sdk:24.10", "perf_analyzer"]
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--steps", "perf,warp"])
    assert "not warp" in capsys.readouterr().err


def test_a_ready_machine_serves_with_compose(repository: Path) -> None:
    gpus, serve, problems = gpu_check.prerequisites(gpu_check.parse_args([]), fake_machine(), repository)
    assert problems == []
    assert serve == "compose"
    assert gpus == [Gpu("NVIDIA H100 80GB HBM3", "560.35.03", 81559, "9.0")]


def test_a_bare_machine_names_every_missing_piece_and_its_fix(tmp_path: Path) -> None:
    machine = fake_machine(present=(), faiss_gpus=0)
    _, _, problems = gpu_check.prerequisites(gpu_check.parse_args([]), machine, tmp_path / "gpu")
    text = "\n".join(problems)
    assert "nvidia-smi not found" in text
    assert text.count("run `make models`") == len(DEFAULT_MODELS)
    assert "docker not found" in text and "tritonserver not found" in text
    assert "tritonclient[all]==2.51.0" in text and "libb64-0d" in text  # how to get perf_analyzer
    assert f"pip install '{gpu_prereqs.gpu_pin()}'" in text


def test_without_the_nvidia_runtime_a_local_triton_serves(
    repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "opt" / "tritonserver" / "bin" / "tritonserver"
    binary.parent.mkdir(parents=True)
    binary.touch()
    (tmp_path / "opt" / "tritonserver" / "backends" / "onnxruntime").mkdir(parents=True)
    monkeypatch.setattr(gpu_prereqs.os, "access", lambda path, mode: True)
    machine = fake_machine(outputs={"docker info": (0, '{"runc":{}}')}, paths={"tritonserver": str(binary)})
    assert "NVIDIA Container Toolkit" in machine.docker()[0]
    _, serve, problems = gpu_check.prerequisites(gpu_check.parse_args([]), machine, repository)
    assert (serve, problems) == ("triton", [])


def test_a_triton_without_its_onnxruntime_backend_is_refused(tmp_path: Path) -> None:
    machine = fake_machine(paths={"tritonserver": str(tmp_path / "bin" / "tritonserver")})
    (problem,) = machine.tritonserver("tritonserver")
    assert "backends/onnxruntime is missing" in problem


def test_an_unwritable_engine_cache_is_named(repository: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_prereqs.os, "access", lambda path, mode: False)
    args = gpu_check.parse_args(["--serve", "triton", "--tritonserver", "/opt/tritonserver/bin/tritonserver"])
    _, _, problems = gpu_check.prerequisites(args, fake_machine(), repository)
    caches = [p for p in problems if "TensorRT engine cache" in p]
    assert len(caches) == len(DEFAULT_MODELS) and all("mkdir -p" in p for p in caches)


def test_perf_analyzer_missing_its_libraries_is_named_with_the_fixes() -> None:
    ldd = "\tlibb64.so.0d => not found\n\tlibcudart.so.12 => not found\n\tlibz.so.1 => /lib/libz.so.1\n"
    (problem,) = fake_machine(outputs={"ldd": (0, ldd)}).perf_analyzer(["perf_analyzer"])
    assert "cannot load libb64.so.0d, libcudart.so.12" in problem
    assert "apt-get install libb64-0d" in problem and "nvidia-cuda-runtime-cu12" in problem
    assert fake_machine().perf_analyzer(["docker", "run", "sdk", "perf_analyzer"]) == []


def test_a_rollout_needs_the_orchestrator_image_to_write_the_repository(repository: Path) -> None:
    machine = fake_machine(outputs={"getfacl": (0, "user::rwx\ngroup::r-x\n")})
    _, _, problems = gpu_check.prerequisites(gpu_check.parse_args([]), machine, repository)
    (problem,) = problems
    assert f"setfacl -R -m u:10001:rwX,d:u:10001:rwX {repository}" in problem
    _, _, problems = gpu_check.prerequisites(gpu_check.parse_args(["--steps", "perf"]), machine, repository)
    assert problems == []


def test_without_getfacl_the_file_modes_decide(repository: Path) -> None:
    machine = fake_machine(present=("nvidia-smi", "docker", "perf_analyzer"))
    assert machine.repository_writable_by_orchestrator(repository)
    for spec in DEFAULT_MODELS:
        model = repository / spec.name
        model.chmod(model.stat().st_mode | stat.S_IWOTH | stat.S_IXOTH)
    assert machine.repository_writable_by_orchestrator(repository) == []


def test_nvidia_smi_lines_become_gpus() -> None:
    text = NVIDIA_SMI + "Tesla T4, 535.183.01, 15360, 7.5\n\nsomething else\n"
    assert [g.name for g in parse_gpus(text)] == ["NVIDIA H100 80GB HBM3", "Tesla T4"]
    _, problems = fake_machine(outputs={"nvidia-smi": (9, "NVIDIA-SMI has failed")}).gpus()
    assert problems == ["nvidia-smi failed (NVIDIA-SMI has failed): is the NVIDIA driver loaded?"]


def test_main_stops_before_starting_anything_when_something_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FACEREC_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(gpu_check, "Machine", lambda: fake_machine(present=()))
    assert gpu_check.main([]) == 2
    assert "gpu-check cannot start:\n  - nvidia-smi not found" in capsys.readouterr().err


def test_check_only_says_how_it_would_serve(
    repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FACEREC_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(gpu_check, "Machine", fake_machine)
    assert gpu_check.main(["--check-only"]) == 0
    assert "it would serve with compose" in capsys.readouterr().err


def test_perf_analyzer_csv_is_read_in_milliseconds() -> None:
    run = perf_analyzer.read_csv(PERF_CSV, "arcface", 1)
    assert (run.concurrency, run.inferences_per_s) == (2, pytest.approx(63.9837))
    assert (run.p50_ms, run.p99_ms) == (pytest.approx(29.25), pytest.approx(67.912))
    with pytest.raises(ValueError, match="no measurement"):
        perf_analyzer.read_csv(PERF_CSV.splitlines()[0], "arcface", 1)


FAKE_PERF_ANALYZER = """
import sys
args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1]
if value("-m") == "face_landmarks":
    print("error: failed to get model metadata")
    sys.exit(99)
if int(value("--measurement-interval")) < 2000:
    print("Failed to obtain stable measurement within 20 measurement windows for concurrency 4.")
    sys.exit(2)
batch, concurrency = int(value("-b")), value("--concurrency-range")
with open(value("-f"), "w") as out:
    out.write(HEADER + f"{concurrency},{100.0 * batch},0,0,0,0,0,0,0,{1000 * batch},0,0,{2000 * batch}\\n")
"""


def test_every_model_is_run_at_the_batch_sizes_it_takes(repository: Path, tmp_path: Path) -> None:
    script = tmp_path / "perf_analyzer.py"
    script.write_text(f"HEADER = {PERF_CSV.splitlines()[0] + chr(10)!r}\n" + FAKE_PERF_ANALYZER)
    runs = perf_analyzer.run_all(
        [sys.executable, str(script)], "127.0.0.1:8001", repository, tmp_path / "out", interval_ms=1000
    )
    by_model: dict[str, list[perf_analyzer.PerfRun]] = {}
    for run in runs:
        by_model.setdefault(run.model, []).append(run)
    for spec in DEFAULT_MODELS:
        assert [r.batch for r in by_model[spec.name]] == [
            b for b in perf_analyzer.BATCHES if b <= spec.max_batch_size
        ]
    # Unstable at 1 s, measured at 2 s.
    detector = by_model["face_detector"][-1]
    assert (detector.error, detector.inferences_per_s, detector.p99_ms) == (None, 1600.0, 32.0)
    assert all("error: failed to get model metadata" in str(r.error) for r in by_model["face_landmarks"])
    table = perf_analyzer.table(runs)
    assert "| arcface | 64 | 4 | 6400.0 | 64.00 | 128.00 |" in table
    assert "| face_landmarks | 1 | 4 | failed: exit 99: error: failed to get model metadata" in table


def test_a_step_that_breaks_costs_only_its_own_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(check: object) -> str:
        raise ConnectionError("no route to host")

    def failing(check: object) -> str:
        raise StepFailure("| 17 of 18 right |")

    outcomes = {"drift": lambda check: "| figures |", "flow": failing, "perf": broken}
    for name, runner in outcomes.items():
        monkeypatch.setitem(gpu_steps.STEP_RUNNERS, name, (name, runner))
    check: gpu_steps.Check = object()  # type: ignore[assignment]  # the runners ignore it
    sections = {name: run_step(name, check) for name in outcomes}
    assert (sections["drift"].body, sections["drift"].failed) == ("| figures |", False)
    assert (sections["flow"].body, sections["flow"].failed) == ("| 17 of 18 right |", True)
    assert sections["perf"].failed and "ConnectionError: no route to host" in sections["perf"].body


def test_the_report_has_the_machine_a_summary_and_each_steps_figures(tmp_path: Path) -> None:
    sections = [
        Section("FP16 drift", "| a | b |\n|---|---|\n| 1 | 2 |\n", 12.4),
        Section("perf_analyzer", "| model | batch |\n", 301.0, failed=True),
    ]
    gpus = [Gpu("NVIDIA L4", "560.35.03", 23034, "8.9")]
    path = gpu_check.write_report(
        tmp_path / "gpu-x", datetime(2026, 1, 2, 3, 4, tzinfo=UTC), gpus, "compose", sections
    )
    text = path.read_text()
    assert path == tmp_path / "gpu-x" / "report.md"
    assert text.startswith("# GPU check — 2026-01-02 03:04 UTC\n")
    assert "| NVIDIA L4 | 560.35.03 | 23034 | 8.9 |" in text
    assert "| FP16 drift | ok | 12 |" in text and "| perf_analyzer | FAILED | 301 |" in text
    assert "## FP16 drift\n\n| a | b |\n|---|---|\n| 1 | 2 |\n" in text
    assert f"docker compose -p {PROJECT} -f docker-compose.gpu.yml down" in text
    local = gpu_check.write_report(
        tmp_path / "local", datetime.now(UTC), gpus, "triton", sections
    ).read_text()
    assert "a local tritonserver" in local and "down`" not in local


def test_compose_runs_as_its_own_project_with_secrets_made_once(tmp_path: Path) -> None:
    stack = ComposeStack(tmp_path, 18000, 18001, 60)
    first, second = stack.environment(), stack.environment()
    for name, file in (("FACEREC_ADMIN_KEY", "admin-key"), ("POSTGRES_PASSWORD", "postgres-password")):
        assert first[name] == second[name] and len(first[name]) >= 24
        assert stat.S_IMODE((tmp_path / "gpu-check" / file).stat().st_mode) == 0o600
    assert (first["FACEREC_DATA_DIR"], first["FACEREC_PORT"], first["TRITON_GRPC_PORT"]) == (
        str(tmp_path),
        "18000",
        "18001",
    )
    command = stack.command("up")
    assert command[:4] == ["docker", "compose", "--project-name", PROJECT]
    assert command[-2:] == [str(gpu_check.ROOT / "docker-compose.gpu.yml"), "up"]


def test_a_local_gpu_triton_runs_its_own_binary_and_backends(tmp_path: Path) -> None:
    binary = Path("/opt/tritonserver/bin/tritonserver")
    command = LocalTriton(binary, tmp_path, tmp_path / "triton.log").command()
    assert command[0] == str(binary)
    assert f"--model-repository={tmp_path}" in command
    assert [a for a in command if a.startswith("--load-model=")] == [
        f"--load-model={s.name}" for s in DEFAULT_MODELS
    ]
    assert not [a for a in command if a.startswith(("--backend-directory", "--backend-config=python"))]


class FakeCompose:
    """Stands in for ComposeStack: serves nothing, or fails as `docker compose up` would."""

    fail = False

    def __init__(self, *args: object) -> None:
        pass

    def __enter__(self) -> Serving:
        if self.fail:
            raise subprocess.CalledProcessError(1, ["docker", "compose", "up"])
        return Serving("http://127.0.0.1:1", "key", "127.0.0.1:2")

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.mark.parametrize("fail", [False, True])
def test_main_serves_runs_the_steps_and_writes_the_report(
    fail: bool, repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEREC_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(gpu_check, "Machine", fake_machine)
    monkeypatch.setattr(gpu_check, "fetch_photos", lambda cache: cache)
    monkeypatch.setattr(gpu_check, "ComposeStack", type("Compose", (FakeCompose,), {"fail": fail}))
    monkeypatch.setitem(
        gpu_steps.STEP_RUNNERS, "drift", ("Drift", lambda check: f"served at {check.serving.api_url}")
    )
    out = tmp_path / "report"
    assert gpu_check.main(["--steps", "drift", "--out", str(out)]) == (1 if fail else 0)
    text = (out / "report.md").read_text()
    if fail:
        assert "| Serving the GPU repository | FAILED |" in text and "CalledProcessError" in text
    else:
        assert "| Drift | ok |" in text and "served at http://127.0.0.1:1" in text
