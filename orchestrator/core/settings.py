"""Settings of the orchestrator and its command line, read from the environment.

Never instantiated at import: ``Settings()`` is built by the command line or by the app
factory's caller. Ports other than ``FACEREC_PORT`` sit at fixed offsets from it, so two
stacks with different ports and data dirs run side by side.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.pipeline.calibration import DEFAULT_MATCH_THRESHOLD


class TritonSettings(BaseModel):
    url: str | None = None
    """gRPC address host:port; default: the local Triton beside ``FACEREC_PORT``."""
    timeout_s: float = 10.0
    metrics_url: str | None = None
    """Triton's Prometheus endpoint (queue lengths for draining); default beside ``FACEREC_PORT``."""
    env_dir: Path | None = None
    """Triton's own Python environment; default ``<data dir>/triton-env``."""


class ApiSettings(BaseModel):
    max_body_bytes: int = 25 * 1024 * 1024
    """Requests with a larger body are refused with 413 before it is read."""
    max_batch_images: int = 16
    max_concurrent_images: int = 64
    """Images being analysed at once; past it requests get 503 + Retry-After at once."""
    cpu_workers: int = 4
    """Threads for decode/align work, off the event loop."""
    default_top_k: int = 5
    cache_ttl_s: int = 3600
    refresh_s: float = 1.0
    """How old this replica's in-memory view of the live state, face owners and API keys
    may be. Writes through this replica are seen at once, through others within this; 0
    reads the database on every request."""


class RolloutSettings(BaseModel):
    batch: int = 32
    """Stored crops re-embedded per Triton request."""
    grace_s: float = 2.0
    """After the switch and the old version's queue is empty, wait this long before unloading."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEREC_", env_nested_delimiter="__", extra="ignore")

    port: int = 8000
    host: str = "127.0.0.1"
    data_dir: Path = Path("var")
    admin_key: SecretStr | None = None
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("FACEREC_DATABASE_URL", "DATABASE_URL")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("FACEREC_REDIS_URL", "REDIS_URL")
    )
    match_threshold: float = DEFAULT_MATCH_THRESHOLD
    triton: TritonSettings = TritonSettings()
    api: ApiSettings = ApiSettings()
    rollout: RolloutSettings = RolloutSettings()
    search_urls: list[str] = []
    """Search service shard URLs; default: the local one beside ``FACEREC_PORT``."""
    embedding_dim: int = 512

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def triton_env_dir(self) -> Path:
        return self.triton.env_dir or self.data_dir / "triton-env"

    @property
    def triton_grpc_url(self) -> str:
        return self.triton.url or f"127.0.0.1:{self.port + 2}"

    @property
    def triton_metrics_url(self) -> str:
        return self.triton.metrics_url or f"http://127.0.0.1:{self.port + 3}/metrics"

    @property
    def search_port(self) -> int:
        return self.port + 4

    @property
    def cache_port(self) -> int:
        return self.port + 5

    @property
    def search_service_urls(self) -> list[str]:
        return self.search_urls or [f"http://127.0.0.1:{self.search_port}"]
