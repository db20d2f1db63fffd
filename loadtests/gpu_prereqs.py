"""What ``make gpu-check`` needs before it starts anything, each missing piece named with its fix.

Each check looks at the machine through two seams, ``which`` and ``run`` (exit code and
output of a command), so that tests can hand it fakes, and returns problems: sentences
for the operator, an empty list when all is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from orchestrator.modelrepo.repository import parse
from search_service.device import visible_gpus

ROOT = Path(__file__).resolve().parent.parent

Run = Callable[[Sequence[str]], tuple[int, str]]
"""A command → (exit code, stdout and stderr)."""

GPU_QUERY = [
    "nvidia-smi",
    "--query-gpu=name,driver_version,memory.total,compute_cap",
    "--format=csv,noheader,nounits",
]
ORCHESTRATOR_UID = 10001
"""The orchestrator image's user, which writes the live version policy into the repository."""

PERF_ANALYZER_HELP = (
    "perf_analyzer ships in the manylinux wheel of tritonclient 2.51.0 (Triton 24.10's client; the "
    "project's own tritonclient has none): `python3 -m venv /opt/pa && /opt/pa/bin/pip install "
    "'tritonclient[all]==2.51.0'` gives /opt/pa/bin/perf_analyzer, which needs libb64 "
    "(`apt-get install libb64-0d`) and the CUDA runtime (`/opt/pa/bin/pip install "
    "nvidia-cuda-runtime-cu12` and its nvidia/cuda_runtime/lib on LD_LIBRARY_PATH); or run "
    "NVIDIA's SDK image: --perf-analyzer 'docker run --rm --net host -v $PWD:$PWD "
    "nvcr.io/nvidia/tritonserver:24.10-py3-sdk perf_analyzer'"
)
LIBRARY_FIXES = {
    "libb64": "apt-get install libb64-0d",
    "libcudart": "pip install nvidia-cuda-runtime-cu12, its nvidia/cuda_runtime/lib on LD_LIBRARY_PATH",
}


def run_command(command: Sequence[str], timeout_s: float = 60.0) -> tuple[int, str]:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 127, str(error)
    return done.returncode, done.stderr + done.stdout


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no output")


@dataclass(frozen=True)
class Gpu:
    name: str
    driver: str
    memory_mib: int
    compute_capability: str


def parse_gpus(text: str) -> list[Gpu]:
    """``nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap`` CSV, no header or units."""
    gpus = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 4 and parts[2].isdigit():
            gpus.append(Gpu(parts[0], parts[1], int(parts[2]), parts[3]))
    return gpus


def gpu_pin() -> str:
    """The faiss GPU requirement of the ``gpu`` extra in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return str(project["optional-dependencies"]["gpu"][0])


@dataclass(frozen=True)
class Machine:
    which: Callable[[str], str | None] = shutil.which
    run: Run = run_command
    faiss_gpus: Callable[[], int] = visible_gpus

    def gpus(self) -> tuple[list[Gpu], list[str]]:
        """The GPUs nvidia-smi lists, or why there are none."""
        if self.which("nvidia-smi") is None:
            return [], ["nvidia-smi not found: this machine has no NVIDIA driver installed"]
        code, out = self.run(GPU_QUERY)
        if code != 0:
            return [], [f"nvidia-smi failed ({_first_line(out)}): is the NVIDIA driver loaded?"]
        gpus = parse_gpus(out)
        return gpus, [] if gpus else ["nvidia-smi lists no GPU"]

    def docker(self) -> list[str]:
        """Docker, its compose plugin and the NVIDIA Container Toolkit, for docker-compose.gpu.yml."""
        if self.which("docker") is None:
            return [
                "docker not found: install Docker Engine and the NVIDIA Container Toolkit, or --serve triton"
            ]
        problems = []
        if self.run(["docker", "compose", "version"])[0] != 0:
            problems.append(
                "`docker compose` is missing: install the Compose v2 plugin (docker-compose-plugin)"
            )
        code, out = self.run(["docker", "info", "--format", "{{json .Runtimes}}"])
        if code != 0:
            problems.append(
                f"docker info failed ({_first_line(out)}): is the daemon running, may this user use it?"
            )
        elif '"nvidia"' not in out and self.which("nvidia-ctk") is None:
            problems.append(
                "Docker has no NVIDIA runtime: install the NVIDIA Container Toolkit, then "
                "`nvidia-ctk runtime configure --runtime=docker` and restart Docker"
            )
        return problems

    def tritonserver(self, binary: str) -> list[str]:
        """A GPU Triton installed here (/opt/tritonserver in NVIDIA's image) with its onnxruntime backend."""
        found = self.which(binary)
        if found is None:
            return [
                f"{binary} not found: give --tritonserver /opt/tritonserver/bin/tritonserver (NVIDIA's "
                "nvcr.io/nvidia/tritonserver:24.10-py3), or --serve compose"
            ]
        backend = Path(found).resolve().parent.parent / "backends" / "onnxruntime"
        if not backend.is_dir():
            return [f"{backend} is missing: the GPU repository needs Triton's onnxruntime backend"]
        return []

    def perf_analyzer(self, command: Sequence[str]) -> list[str]:
        found = self.which(command[0])
        if found is None:
            return [f"{command[0]} not found. {PERF_ANALYZER_HELP}"]
        if Path(found).name == "docker" or self.which("ldd") is None:
            return []
        _, out = self.run(["ldd", found])
        missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
        fixes = sorted(
            {fix for lib in missing for prefix, fix in LIBRARY_FIXES.items() if lib.startswith(prefix)}
        )
        if missing:
            return [f"{found} cannot load {', '.join(missing)}: {'; '.join(fixes) or 'install them'}"]
        return []

    def faiss(self) -> list[str]:
        if self.faiss_gpus() > 0:
            return []
        return [
            "faiss in this environment sees no GPU, so the search benchmark would run on the CPU: "
            f".venv/bin/pip uninstall -y faiss-cpu && .venv/bin/pip install '{gpu_pin()}' "
            "(the gpu extra), or leave out the search step (--steps)"
        ]

    def repository_writable_by_orchestrator(self, repository: Path) -> list[str]:
        """Compose's orchestrator (uid 10001) writes the live version policy there on a rollout.

        It replaces ``<model>/config.pbtxt`` by a rename, so it needs to write the model directories.
        """
        models = [repository / spec.name for spec in DEFAULT_MODELS]
        if self.which("getfacl") is not None:
            _, out = self.run(["getfacl", "-p", "-n", *map(str, models)])
            granted = out.count(f"user:{ORCHESTRATOR_UID}:rwx")
        else:
            granted = sum(_writable_by_uid(path, ORCHESTRATOR_UID) for path in models if path.is_dir())
        if granted >= len(models):
            return []
        return [
            f"uid {ORCHESTRATOR_UID} (the orchestrator image) cannot write {repository}, so a rollout "
            f"would fail: setfacl -R -m u:{ORCHESTRATOR_UID}:rwX,d:u:{ORCHESTRATOR_UID}:rwX {repository}"
        ]


def _writable_by_uid(directory: Path, uid: int) -> bool:
    """Whether ``uid`` may create and rename files in ``directory``, by its mode bits."""
    mode = directory.stat()
    return mode.st_mode & 0o003 == 0o003 or (mode.st_uid == uid and mode.st_mode & 0o300 == 0o300)


def repository_problems(repository: Path) -> list[str]:
    """Every catalog model with its config and a version directory holding model.onnx."""
    problems = []
    for spec in DEFAULT_MODELS:
        model = repository / spec.name
        if not (model / "config.pbtxt").is_file() or not any(model.glob("[0-9]*/model.onnx")):
            problems.append(f"no {spec.name} in {repository}: run `make models` (facerec models fetch)")
    return problems


def engine_cache_problems(repository: Path) -> list[str]:
    """The TensorRT engine cache directories the GPU configs name, creatable by this user.

    Compose mounts a volume there; a Triton run on this machine needs the directories itself.
    """
    problems = []
    for spec in DEFAULT_MODELS:
        path = repository / spec.name / "config.pbtxt"
        if not path.is_file():
            continue
        for accelerator in parse(
            path.read_text()
        ).optimization.execution_accelerators.gpu_execution_accelerator:
            cache = accelerator.parameters.get("trt_engine_cache_path")
            if cache is None:
                continue
            existing = next(p for p in (Path(cache), *Path(cache).parents) if p.exists())
            if not os.access(existing, os.W_OK):
                problems.append(
                    f"{spec.name}'s TensorRT engine cache {cache} is not writable: mkdir -p {cache}"
                )
    return problems
