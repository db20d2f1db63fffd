"""The process and the machine it runs on, as ``/health/detailed`` reports them (psutil)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil
from pydantic import BaseModel, Field

CPU_SAMPLE_S = 0.1
"""CPU use is measured over a sample this long, taken when asked."""


class ProcessState(BaseModel):
    pid: int
    uptime_s: float
    cpu_percent: float = Field(description=f"of one core over {CPU_SAMPLE_S} s: busy on two cores reads 200")
    rss_bytes: int
    threads: int


class MachineState(BaseModel):
    cpus: int
    cpu_percent: float = Field(description=f"of all cores together over {CPU_SAMPLE_S} s")
    load_1m: float
    memory_total_bytes: int
    memory_available_bytes: int
    disk_total_bytes: int = Field(description="of the file system that holds the data dir")
    disk_free_bytes: int


def _existing(path: Path) -> Path:
    """The path, or its nearest ancestor that exists (a data dir not made yet)."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _sample(seconds: float) -> tuple[float, float]:
    """CPU % of this process and of the machine over ``seconds`` (blocks that long)."""
    process = psutil.Process()  # its own object: the first reading starts its sample
    process.cpu_percent(None)
    machine = psutil.cpu_percent(seconds)
    return process.cpu_percent(None), machine


async def host_state(data_dir: Path) -> tuple[ProcessState, MachineState]:
    """Both, now; the CPU figures over the :data:`CPU_SAMPLE_S` just past."""
    process_cpu, machine_cpu = await asyncio.to_thread(_sample, CPU_SAMPLE_S)
    process = psutil.Process()
    with process.oneshot():
        rss = process.memory_info().rss
        threads = process.num_threads()
        created = process.create_time()
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(_existing(data_dir)))
    return (
        ProcessState(
            pid=process.pid,
            uptime_s=round(max(0.0, time.time() - created), 1),
            cpu_percent=round(process_cpu, 1),
            rss_bytes=rss,
            threads=threads,
        ),
        MachineState(
            cpus=psutil.cpu_count() or 1,
            cpu_percent=round(machine_cpu, 1),
            load_1m=round(os.getloadavg()[0], 2),
            memory_total_bytes=memory.total,
            memory_available_bytes=memory.available,
            disk_total_bytes=disk.total,
            disk_free_bytes=disk.free,
        ),
    )
