"""Settings of one search service process (environment prefix ``FACEREC_SEARCH_``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def parse_shard(value: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    index_text, sep, count_text = value.partition("/")
    if not sep or not index_text.isdigit() or not count_text.isdigit():
        raise ValueError(f"shard must look like I/N, not {value!r}")
    index, count = int(index_text), int(count_text)
    if not 0 <= index < count:
        raise ValueError(f"shard index must be in [0, {count}), got {index}")
    return index, count


class SearchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEREC_SEARCH_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=0, le=65535)
    data_dir: Path = Path("var/search")
    shard: str | None = Field(default=None, description="I/N: this process owns id % N == I")
    device: str = Field(default="auto", description="auto, cpu, gpu or gpu:N")
    search_threads: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)
    snapshot_every_records: int = Field(default=1000, ge=1)
    snapshot_every_bytes: int = Field(default=1 << 30, ge=1)
    max_tombstones: int = Field(default=1024, ge=0)
    max_queries: int = Field(default=4096, ge=1, description="query vectors per search")
    log_level: str = "info"

    @field_validator("shard")
    @classmethod
    def _valid_shard(cls, value: str | None) -> str | None:
        if value is not None:
            parse_shard(value)
        return value

    @property
    def shard_tuple(self) -> tuple[int, int] | None:
        return parse_shard(self.shard) if self.shard else None
