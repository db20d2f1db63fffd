"""Resident memory of the serving processes during a soak, and whether it stayed flat.

A process is watched with its children (Triton's Python-backend stubs are children of
tritonserver), summed. Flat means: after the warm-up (the first quarter of the samples,
when allocators and caches fill), the median of the last quarter is within both a relative
and an absolute bound of the median of the second quarter.
"""

from __future__ import annotations

import csv
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

GROWTH_LIMIT = 0.10
"""Relative growth (last quarter vs second quarter) still called flat."""
GROWTH_LIMIT_BYTES = 64 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    """RSS of a process and all its descendants; 0 once it is gone."""
    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return int(total)
    except psutil.NoSuchProcess:
        return 0


def listening_pid(port: int) -> int | None:
    """The process listening on a local TCP port (to find the target when no pid is given)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


def parse_watch(spec: str) -> dict[str, int]:
    """``name=pid,name=pid`` → {name: pid}."""
    watched = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, pid = item.partition("=")
        watched[name] = int(pid)
    return watched


@dataclass
class Verdict:
    name: str
    start_mb: float
    end_mb: float
    growth: float
    flat: bool


@dataclass
class RssSamples:
    watched: dict[str, int]
    times: list[float] = field(default_factory=list)
    values: dict[str, list[int]] = field(default_factory=dict)

    def sample(self) -> None:
        self.times.append(time.time())
        for name, pid in self.watched.items():
            self.values.setdefault(name, []).append(rss_bytes(pid))

    def write_csv(self, path: Path) -> None:
        names = list(self.watched)
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["timestamp", *[f"{n}_rss_bytes" for n in names]])
            for i, stamp in enumerate(self.times):
                writer.writerow([f"{stamp:.1f}", *[self.values[n][i] for n in names]])

    def verdicts(self) -> list[Verdict]:
        found = []
        for name, values in self.values.items():
            quarter = max(1, len(values) // 4)
            early = values[quarter : 2 * quarter] or values[:1]
            late = values[-quarter:]
            start, end = statistics.median(early), statistics.median(late)
            growth = (end - start) / start if start else 0.0
            flat = growth <= GROWTH_LIMIT or end - start <= GROWTH_LIMIT_BYTES
            found.append(Verdict(name, start / 2**20, end / 2**20, growth, flat))
        return found
