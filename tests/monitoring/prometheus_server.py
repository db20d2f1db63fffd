"""A real Prometheus server for tests: temp config and storage, free port, stopped by pid."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from orchestrator.runtime.triton_server import free_port

SCRAPE_INTERVAL = "1s"


def find_binary() -> str | None:
    return shutil.which("prometheus") or next(
        (p for p in ("/usr/bin/prometheus",) if Path(p).is_file()), None
    )


def scrape_config(targets: dict[str, str], rules: Path) -> dict[str, Any]:
    """One job per target (job name → host:port), 1 s scrapes, the deployment's rules."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [address]}]} for job, address in targets.items()
        ],
    }


class PrometheusServer:
    def __init__(self, binary: str, root: Path, config: dict[str, Any]) -> None:
        self.binary = binary
        self.root = root
        self.config = config
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> PrometheusServer:
        self.root.mkdir(parents=True, exist_ok=True)
        config_file = self.root / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        log = (self.root / "prometheus.log").open("ab")
        with log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={self.root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/-/ready", timeout=2.0).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"prometheus not ready after {timeout_s}s: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.root / "prometheus.log").read_text(errors="replace")[-2000:]

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10.0)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def scalar(self, expr: str) -> float | None:
        """The value of a single-series result; None while there is no sample yet."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
