"""CPU time per served request, per process of the thing under load (children included).

On a machine where every variant saturates the same cores, CPU per request is what decides
throughput; it says which process to make cheaper.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import psutil


def cpu_seconds(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named process and its descendants."""
    used: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        total = 0.0
        for process in processes:
            with contextlib.suppress(psutil.Error):  # a child that ended meanwhile
                times = process.cpu_times()
                total += times.user + times.system
        used[name] = total
    return used


def per_request_ms(
    before: Mapping[str, float], after: Mapping[str, float], requests: int
) -> dict[str, float]:
    """CPU ms per request of each process between two samples."""
    if requests <= 0:
        return {}
    return {name: 1000.0 * (after[name] - before.get(name, 0.0)) / requests for name in after}
