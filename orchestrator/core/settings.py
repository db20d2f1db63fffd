"""Settings of the orchestrator and its command line, read from the environment.

Never instantiated at import: ``Settings()`` is built by the command line or by the app
factory's caller. Ports other than ``FACEREC_PORT`` sit at fixed offsets from it, so two
stacks with different ports and data dirs run side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.pipeline.calibration import DEFAULT_MATCH_THRESHOLD
from search_service.schema import CollectionSpec, IndexKind

MIN_SECRET_CHARS = 24
"""Shortest FACEREC_ADMIN_KEY or FACEREC_SEARCH_TOKEN accepted (a generated one has 43+)."""


class TritonSettings(BaseModel):
    url: str | None = None
    """gRPC address host:port; default: the local Triton beside ``FACEREC_PORT``."""
    control_urls: list[str] = []
    """gRPC host:port of every Triton, for model control (load, unload); an entry whose host
    resolves to several addresses (a Kubernetes headless Service) stands for all of them,
    resolved at each use since replicas come and go. Default: ``[url]``."""
    timeout_s: float = 10.0
    metrics_url: str | None = None
    """Triton's Prometheus endpoint (queue lengths for draining); default beside ``FACEREC_PORT``.
    Its host may be a headless name too: a drain then waits on every address (same port and path)."""
    env_dir: Path | None = None
    """Triton's own Python environment; default ``<data dir>/triton-env``."""
    repository: Path | None = None
    """Triton's model repository as this process sees it (rollouts write the live version
    policy into ``<repository>/<model>/config.pbtxt``); default ``<data dir>/models/repository/cpu``."""
    check_s: PositiveFloat = 5.0
    """How often every Triton is checked for the live embedder versions (one that restarted
    without them gets them loaded again)."""
    chain: bool = True
    """Analyse each image in one call to Triton's ``face_chain`` model (decode, detect,
    landmarks, align and embed in Triton); false: the orchestrator decodes and aligns and
    calls the three models itself, three requests an image and its CPU for the pixels."""


class ApiSettings(BaseModel):
    max_body_bytes: int = 25 * 1024 * 1024
    """Requests with a larger body are refused with 413 before it is read."""
    max_concurrent_images: int = 32
    """Images being analysed at once, by all the workers together; past it requests get 503
    + Retry-After at once, before their body is read (a request counts as one image at the
    door, a batch takes its others once its images are known). Every image in flight waits
    in a queue somewhere (Triton's, mostly), so the limit over the throughput is the time an
    answer waits: on 2 cores (~45 images/s) 32 keeps the answers within 0.7 s at full load
    with the same throughput as 64, whose 1.4 s queue let the slowest answers take 2.5-3.9 s."""
    pixel_budget_bytes: PositiveInt = 1024 * 1024 * 1024
    """Memory the images being analysed may take together: each upload's bytes and its
    decoded pixels (7 bytes per pixel, measured), reserved from its header before it is
    decoded. An image that does not fit now gets 503 + Retry-After, one larger than this 413."""
    limit_concurrency: PositiveInt = 1024
    """uvicorn's own bound on each worker's open connections and running requests: past it
    uvicorn answers a plain-text 503 before the app sees the request. A backstop, kept far
    above ``max_concurrent_images`` so that overload is answered by the app (problem+json)."""
    shutdown_drain_s: NonNegativeFloat = 0.0
    """On SIGTERM, keep serving this long with ``/health/ready`` at 503 and ``Connection:
    close`` on every answer, before shutting down: behind a load balancer, long enough for
    it to take the replica out of rotation (the Kubernetes manifest sets 5)."""
    cpu_workers: int = 4
    """Threads for decode/align work, off the event loop."""
    workers: PositiveInt = 1
    """Orchestrator processes serving the one port (SO_REUSEPORT: the kernel spreads new
    connections over them). Each has an event loop and a GIL of its own, so on the
    three-call path (``triton.chain`` false: the pixel work is here) the cheap answers (the
    door's 503 and 401) do not wait behind one loop's image work; give it 2 there. With the
    face_chain one is enough and better: at 16 users on two cores one worker served 74.6
    req/s at 3.2 ms of its CPU a request, two 69.7-74.0 at 3.7-4.1 (their searches batch
    less). The images in flight are counted across them; the pixel budget and the decode
    threads are for all of them together, each taking its share. Under Kubernetes, scale
    with pods instead (1)."""
    default_top_k: int = 5
    cache_ttl_s: int = 3600
    refresh_s: float = 1.0
    """How old this replica's in-memory view of the live state, face owners and API keys
    may be. Writes through this replica are seen at once, through others within this; 0
    reads the database on every request."""

    def worker_share(self) -> ApiSettings:
        """What one of ``workers`` processes may take of the limits, which are for them all
        (the admission limit is counted across them: :mod:`orchestrator.api.in_flight`)."""
        n = self.workers
        return self.model_copy(
            update={
                "workers": 1,
                "pixel_budget_bytes": max(1, self.pixel_budget_bytes // n),
                "cpu_workers": -(-self.cpu_workers // n),
            }
        )

    @model_validator(mode="after")
    def _server_bound_above_admission(self) -> ApiSettings:
        # Refused requests still run briefly, and other routes are not admitted: leave room.
        if self.limit_concurrency < 4 * self.max_concurrent_images:
            raise ValueError(
                f"FACEREC_API__LIMIT_CONCURRENCY ({self.limit_concurrency}) must be at least 4 × "
                f"FACEREC_API__MAX_CONCURRENT_IMAGES ({self.max_concurrent_images}), or uvicorn "
                "answers overload with plain text before the API's own 503"
            )
        return self


class RolloutSettings(BaseModel):
    batch: int = 32
    """Stored crops re-embedded per Triton request."""
    grace_s: float = 2.0
    """After the switch and the old version's queue is empty, wait this long before unloading."""
    lease_s: PositiveFloat = 15.0
    """A rollout's owner renews its lease every third of this; a rollout whose lease has
    run out (its process died) is taken over by another replica within a third of it."""


_SPEC = CollectionSpec.model_fields


class IndexSettings(BaseModel):
    """The FAISS index of every collection the orchestrator creates (a rollout's, a rebuild's,
    the first one): the search service's ``CollectionSpec`` under the same names and defaults,
    whose bounds it checks at start. An existing collection keeps its kind; a rebuild
    (``POST /v1/index/rebuild``) moves the gallery to a new one of this kind."""

    kind: IndexKind = "flat"
    """``flat`` (exact), ``ivf`` or ``hnsw`` (approximate; recall measured in the README)."""
    nlist: int = _SPEC["nlist"].default
    """ivf: inverted lists; the index trains once the collection holds 39 × nlist vectors."""
    nprobe: int = _SPEC["nprobe"].default
    """ivf: lists searched per query."""
    hnsw_m: int = _SPEC["hnsw_m"].default
    """hnsw: graph degree."""
    ef_construction: int = _SPEC["ef_construction"].default
    """hnsw: candidates kept while adding."""
    ef_search: int = _SPEC["ef_search"].default
    """hnsw: candidates kept while searching."""

    def spec(self, dim: int) -> CollectionSpec:
        """The search service's collection spec for vectors of ``dim``."""
        return CollectionSpec(dim=dim, index=self.kind, **self.model_dump(exclude={"kind"}))

    @model_validator(mode="after")
    def _within_the_service_bounds(self) -> IndexSettings:
        self.spec(dim=1)  # the service's own bounds, checked at start rather than at a rollout
        return self


class SearchBackendSettings(BaseModel):
    """Which search backend holds the gallery's vectors (``FACEREC_SEARCH__*``; the FAISS
    service's own ``FACEREC_SEARCH_URLS`` and ``FACEREC_SEARCH_TOKEN`` keep their names)."""

    backend: Literal["faiss", "milvus"] = "faiss"
    """``faiss``: this project's search service (one machine, or shards of it). ``milvus``: a
    Milvus server or cluster at ``milvus_uri``, or Milvus Lite in a file (README, "Search backends")."""
    milvus_uri: str | None = None
    """``http://host:19530`` for a Milvus server or cluster; a path ending in ``.db`` for a Milvus
    Lite file. Default: ``<data dir>/milvus.db``, which ``facerec up`` serves to its processes."""
    milvus_token: SecretStr | None = None
    """Sent to Milvus as its token (``user:password`` or an API key) when it has authentication
    on; default: ``FACEREC_SEARCH_TOKEN``, which the Milvus Lite server of ``facerec up`` checks."""
    milvus_gpu_index: bool = False
    """Build the GPU kinds of the ``FACEREC_INDEX__KIND`` indexes (GPU_BRUTE_FORCE, GPU_IVF_FLAT,
    GPU_CAGRA) for a Milvus GPU image; Milvus Lite has none."""
    timeout_s: PositiveFloat = 10.0
    """Each call to Milvus (its retries included)."""


class LogSettings(BaseModel):
    """The recognition log and the per-minute request statistics kept in the database."""

    retention_days: PositiveInt = 30
    """Log entries and statistics older than this are removed."""
    prune_s: PositiveFloat = 3600.0
    """How often each replica removes what is past the retention (and once at start)."""
    stats_flush_s: PositiveFloat = 10.0
    """How often each replica writes its request statistics of the minutes that are over."""


class JobSettings(BaseModel):
    """Jobs and ``facerec worker`` (``orchestrator/jobs``)."""

    concurrency: PositiveInt = 8
    """Items each worker keeps in flight: together they reach Triton's dynamic batcher."""
    max_retries: NonNegativeInt = 5
    """Attempts after the first for an item whose failure is transient (Triton or the search
    service unavailable, a timeout); past them it goes to the dead letters."""
    retry_backoff_s: PositiveFloat = 1.0
    """The wait before the first retry, doubled for each next one (1+2+4+8+16 = 31 s of
    outage ridden out with the defaults)."""
    retry_backoff_max_s: PositiveFloat = 60.0
    heartbeat_s: PositiveFloat = 5.0
    """How often a worker says it is alive, and looks for the items of workers that are not."""
    lost_after_s: PositiveFloat = 30.0
    """A worker silent this long is gone: its running items are queued again."""
    retention_days: PositiveInt = 7
    """Ended jobs, their results and their images are removed this long after they end."""
    max_items: PositiveInt = 10_000
    """Images (or people, for an enrolment) in one job."""
    max_body_bytes: PositiveInt = 256 * 1024 * 1024
    """The largest upload of ``POST /v1/jobs``; other routes keep ``FACEREC_API__MAX_BODY_BYTES``."""
    alive_file: Path | None = None
    """A file the worker touches at each heartbeat, for a liveness probe to check its age."""


class AuthSettings(BaseModel):
    """User accounts and their sessions (``orchestrator/accounts``); API keys are unaffected."""

    open_registration: bool = False
    """Anyone may create a ``recognize`` user with ``POST /v1/auth/register``; off: 403."""
    session_ttl_s: PositiveFloat = 12 * 3600.0
    """A session ends this long after its login, used or not."""
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    """The session cookies' Secure flag. ``auto``: when the request came over https, which
    behind a proxy uvicorn reads from X-Forwarded-Proto if the proxy's address is in
    ``FORWARDED_ALLOW_IPS`` (uvicorn's own setting; the loopback addresses by default)."""
    login_window_s: PositiveFloat = 900.0
    """Failed logins are counted over this window."""
    login_max_failures: PositiveInt = 5
    """Failed logins for one username within the window; past it each attempt is 429."""
    login_max_failures_per_address: PositiveInt = 50
    """Failed logins from one client address within the window (higher: a NAT holds many users)."""


class MatchSettings(BaseModel):
    """The threshold calibrated on the live gallery (``gallery/calibration.py``)."""

    target_far: float | None = Field(default=None, gt=0.0, lt=1.0)
    """The false-accept rate to hold, e.g. 1e-4: the gallery's impostor scores set the
    threshold for it once there are enough of them (≈ 3 / target); until then, or without
    a target, ``FACEREC_MATCH_THRESHOLD`` stands."""
    neighbours: PositiveInt = 50
    """Nearest faces searched per face to keep its impostor and genuine scores."""
    recalibrate_s: NonNegativeFloat = 10.0
    """How often, at most, each replica reads the scores again to recalibrate once the gallery
    has changed (a new generation); meanwhile answers use the calibration it has. 0: at every
    change."""


class QualitySettings(BaseModel):
    """The enrolment quality gate (``orchestrator/pipeline/quality.py``): a face that misses one
    of these is refused with 422 and the reasons, measured. The defaults were measured on the
    test photos and their degradations (README, "Quality gate"). Recognition is not gated."""

    enabled: bool = True
    """Off: every face found is enrolled. An admin can also skip the gate for one enrolment
    (``?quality=off``)."""
    min_face_px: NonNegativeFloat = 40.0
    """Shorter side of the face's box, in pixels of the image as sent."""
    min_sharpness: NonNegativeFloat = 25.0
    """Variance of the Laplacian of the aligned 112×112 crop (the part inside the image)."""
    max_yaw_deg: float = Field(default=35.0, ge=0.0, le=90.0)
    """Sideways turn estimated from the 5 landmarks, either way."""
    max_pitch_deg: float = Field(default=35.0, ge=0.0, le=90.0)
    """Up or down tilt estimated from the 5 landmarks, either way."""
    min_det_score: float = Field(default=0.9, ge=0.0, le=1.0)
    """The detector's confidence (it reports faces from 0.7)."""


class Settings(BaseSettings):
    # hide_input_in_errors: a refused key or a database URL's password stays out of the log.
    model_config = SettingsConfigDict(
        env_prefix="FACEREC_", env_nested_delimiter="__", extra="ignore", hide_input_in_errors=True
    )

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
    match: MatchSettings = MatchSettings()
    quality: QualitySettings = QualitySettings()
    log: LogSettings = LogSettings()
    jobs: JobSettings = JobSettings()
    index: IndexSettings = IndexSettings()
    auth: AuthSettings = AuthSettings()
    search: SearchBackendSettings = SearchBackendSettings()
    search_urls: list[str] = []
    """Search service shard URLs; default: the local one beside ``FACEREC_PORT``."""
    search_token: SecretStr | None = None
    """Bearer token sent to every search shard (the shards' own ``FACEREC_SEARCH_TOKEN``,
    same name so one Secret feeds both); ``facerec up`` makes one per data dir."""
    embedding_dim: int = 512

    @field_validator("admin_key", "search_token")
    @classmethod
    def _long_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_SECRET_CHARS:
            name = f"FACEREC_{info.field_name}".upper()
            raise ValueError(
                f"{name} must be at least {MIN_SECRET_CHARS} characters; make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

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
    def triton_control_urls(self) -> list[str]:
        return self.triton.control_urls or [self.triton_grpc_url]

    @property
    def triton_repository(self) -> Path:
        return self.triton.repository or self.models_dir / "repository" / "cpu"

    @property
    def search_port(self) -> int:
        return self.port + 4

    @property
    def cache_port(self) -> int:
        return self.port + 5

    @property
    def search_service_urls(self) -> list[str]:
        return self.search_urls or [f"http://127.0.0.1:{self.search_port}"]

    @property
    def milvus_uri(self) -> str:
        return self.search.milvus_uri or str(self.data_dir / "milvus.db")

    @property
    def milvus_token(self) -> str | None:
        token = self.search.milvus_token or self.search_token
        return token.get_secret_value() if token else None
