"""A real Prometheus server for tests: temp config and storage, free port, stopped by pid."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import yaml

from orchestrator.runtime.processes import ManagedProcess, free_port

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
        self._process = ManagedProcess("prometheus", root / "prometheus.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> PrometheusServer:
        self.root.mkdir(parents=True, exist_ok=True)
        config_file = self.root / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        self._process.start(
            [
                self.binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ]
        )
        self._process.wait_http(f"{self.url}/-/ready", timeout_s)
        return self

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
        self._process.stop()

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
