"""Settings of one search service process (environment prefix ``FACEREC_SEARCH_``)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Self

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
    device: str = Field(default="auto", description="auto, cpu, gpu or gpu:N")
    search_threads: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)
    snapshot_every_records: int = Field(default=1000, ge=1)
    snapshot_every_bytes: int = Field(default=1 << 30, ge=1)
    max_tombstones: int = Field(default=1024, ge=0)
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

    @field_validator("shard")
    @classmethod
    def _valid_shard(cls, value: str | None) -> str | None:
        if value is not None:
            parse_shard(value)
        return value

    @property
    def shard_tuple(self) -> tuple[int, int] | None:
        return parse_shard(self.shard) if self.shard else None
