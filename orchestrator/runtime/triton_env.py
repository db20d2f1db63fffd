"""The isolated virtual environment that Triton and its Python-backend stub run in."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

PIP_TIMEOUT_S = 900
READY_MARKER = ".facerec-ready"


class TritonEnvironmentError(RuntimeError):
    pass


@dataclass(frozen=True)
class TritonEnvironment:
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def _site_packages(self) -> Path:
        return (
            self.root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        )

    @property
    def server_home(self) -> Path:
        return self._site_packages / "pytriton" / "tritonserver"

    @property
    def tritonserver(self) -> Path:
        return self.server_home / "bin" / "tritonserver"

    @property
    def libraries(self) -> Path:
        return self._site_packages / "nvidia_pytriton.libs"

    @property
    def backends(self) -> Path:
        """A backend directory holding the Python backend with the stub for this Python."""
        return self.root / "triton-backends"

    def is_ready(self) -> bool:
        """Made, and from the requirements this code pins (a changed pin installs again)."""
        marker = self.root / READY_MARKER
        return (
            marker.is_file()
            and marker.read_text().strip() == requirements_digest()
            and self.tritonserver.is_file()
        )

    def _link_backends(self) -> None:
        python_backend = self.backends / "python"
        python_backend.mkdir(parents=True, exist_ok=True)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        sources = {
            "libtriton_python.so": self.server_home / "backends" / "python" / "libtriton_python.so",
            "triton_python_backend_utils.py": self.server_home
            / "backends"
            / "python"
            / "triton_python_backend_utils.py",
            "triton_python_backend_stub": self.server_home
            / "python_backend_stubs"
            / version
            / "triton_python_backend_stub",
        }
        for name, source in sources.items():
            if not source.is_file():
                raise TritonEnvironmentError(f"{source} is missing from nvidia-pytriton")
            link = python_backend / name
            link.unlink(missing_ok=True)
            link.symlink_to(source)


def requirements_digest() -> str:
    text = (resources.files("orchestrator.runtime") / "triton_requirements.txt").read_text()
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_environment(root: Path) -> TritonEnvironment:
    """Create the environment with the pinned requirements unless it already exists."""
    root = root.resolve()
    env = TritonEnvironment(root)
    if env.is_ready():
        return env
    requirements = resources.files("orchestrator.runtime") / "triton_requirements.txt"
    log.info("creating Triton's Python environment in %s", root)
    try:
        if not (env.bin / "python").is_file():
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
        with resources.as_file(requirements) as req:
            subprocess.run(
                [str(env.bin / "python"), "-m", "pip", "install", "-q", "-r", str(req)],
                check=True,
                timeout=PIP_TIMEOUT_S,
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        raise TritonEnvironmentError(f"could not create Triton's environment: {error}") from error
    env._link_backends()
    (root / READY_MARKER).write_text(requirements_digest() + "\n")
    return env
