"""Settings of one search service process (environment prefix ``FACEREC_SEARCH_``)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_TOKEN_CHARS = 24


def parse_shard(value: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    index_text, sep, count_text = value.partition("/")
    if not sep or not index_text.isdigit() or not count_text.isdigit():
        raise ValueError(f"shard must look like I/N, not {value!r}")
    index, count = int(index_text), int(count_text)
    if not 0 <= index < count:
        raise ValueError(f"shard index must be in [0, {count}), got {index}")
    return index, count


@dataclass(frozen=True)
class DeviceChoice:
    """What ``FACEREC_SEARCH_DEVICE`` asks for.

    * ``cpu``: the CPU.
    * ``gpu`` / ``gpu:N``: GPU N (0 for ``gpu``); the service refuses to start without it.
    * ``auto``: GPU 0 when the installed faiss is a GPU build, refusing to start if that GPU
      cannot be used; the CPU with a CPU-only faiss (the CPU image), where there is nothing
      to fall back from.
    * ``gpu-or-cpu``: GPU 0 if it can be used, else the CPU with a warning: the one value
      that allows falling back.
    """

    kind: Literal["cpu", "auto", "gpu", "gpu-or-cpu"]
    gpu: int = 0

    @property
    def may_fall_back(self) -> bool:
        return self.kind == "gpu-or-cpu"


_NAMED_DEVICES = {
    "cpu": DeviceChoice("cpu"),
    "auto": DeviceChoice("auto"),
    "gpu": DeviceChoice("gpu"),
    "gpu-or-cpu": DeviceChoice("gpu-or-cpu"),
}


def parse_device(value: str) -> DeviceChoice:
    text = value.strip().lower()
    if text in _NAMED_DEVICES:
        return _NAMED_DEVICES[text]
    kind, _, number = text.partition(":")
    if kind != "gpu" or not number.isdigit():
        raise ValueError(f"device must be auto, cpu, gpu, gpu:N or gpu-or-cpu, not {value!r}")
    return DeviceChoice("gpu", int(number))


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SearchSettings(BaseSettings):
    # hide_input_in_errors: a refused token must not be echoed into the log stream.
    model_config = SettingsConfigDict(env_prefix="FACEREC_SEARCH_", extra="ignore", hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=0, le=65535)
    data_dir: Path = Path("var/search")
    shard: str | None = Field(default=None, description="I/N: this process owns id % N == I")
    device: str = Field(default="auto", description="auto, cpu, gpu, gpu:N or gpu-or-cpu (DeviceChoice)")
    gpu_temp_memory_mb: int = Field(
        default=512,
        ge=0,
        le=1536,
        description="GPU scratch memory faiss reserves once per process (StandardGpuResources); "
        "faiss never takes more than 1536 and asks cudaMalloc for what does not fit",
    )
    search_threads: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)
    snapshot_every_records: int = Field(default=1000, ge=1)
    snapshot_every_bytes: int = Field(default=1 << 30, ge=1)
    max_tombstones: int = Field(
        default=1024,
        ge=0,
        description="deleted vectors kept in an index before it is rebuilt without them; a GPU copy "
        "keeps at most 2048 - MAX_K (1024): each search asks faiss for k + tombstones, at most 2048",
    )
    max_queries: int = Field(default=4096, ge=1, description="query vectors per search")
    log_level: str = "info"
    token: SecretStr | None = None
    """``FACEREC_SEARCH_TOKEN``: the bearer token every call but /health and /metrics must
    carry. Required to listen beyond loopback; without it the service is open."""

    @field_validator("token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"FACEREC_SEARCH_TOKEN must be at least {MIN_TOKEN_CHARS} characters")
        return value

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> Self:
        if self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"FACEREC_SEARCH_TOKEN must be set to listen on {self.host}: without it anyone "
                "who can reach the port could drop a collection"
            )
        return self

    @field_validator("device")
    @classmethod
    def _valid_device(cls, value: str) -> str:
        parse_device(value)
        return value

    @field_validator("shard")
    @classmethod
    def _valid_shard(cls, value: str | None) -> str | None:
        if value is not None:
            parse_shard(value)
        return value

    @property
    def shard_tuple(self) -> tuple[int, int] | None:
        return parse_shard(self.shard) if self.shard else None

    @property
    def device_choice(self) -> DeviceChoice:
        return parse_device(self.device)
