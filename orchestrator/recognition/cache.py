"""The recognition cache: answers kept in Redis, keyed by image, parameters, model and gallery.

A key names the image (sha256 of its bytes), the request parameters, the active model
version and the gallery generation. Any enrol/delete, and any change of a person (answers
carry the person's fields), bumps the generation in the database, so older answers are never
read again and simply expire by TTL: no invalidation traffic.

The cache is an optimisation, never a dependency: with Redis down every call returns at
once (None / nothing stored), the cache reports "degraded" for /health/detailed and probes
the server again at most every ``retry_s``, so a dead server is not hammered by every
request. Each call is bounded by ``timeout_s`` as a whole, not per socket operation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from orchestrator.recognition.answers import ImageRecognition

log = logging.getLogger(__name__)

CacheState = Literal["disabled", "ok", "degraded"]
T = TypeVar("T")


class _Failed:
    """What a Redis call gives back when Redis did not answer (None is a valid answer)."""


FAILED = _Failed()


def redact_url(url: str) -> str:
    """The URL with ``***`` for its password, for logs and health answers."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unreadable (a port that is not a number, say), so where a password would end is a
        # guess: everything between the scheme and the last "@" goes.
        userinfo, at, location = url.rpartition("@")
        if not at:
            return url
        scheme, sep, _ = userinfo.partition("://")
        return f"{scheme}://***@{location}" if sep else f"***@{location}"


def canonical_json(value: object) -> str:
    """One spelling per value: sorted keys, no spaces, no NaN; so equal requests share a key."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class RecognitionCache:
    def __init__(
        self,
        url: str | None,
        *,
        ttl_s: int = 3600,
        timeout_s: float = 0.25,
        prefix: str = "facerec:",
        retry_s: float = 2.0,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive: the TTL is what clears old generations")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.url = url
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.prefix = prefix
        self.retry_s = retry_s
        self._client: aioredis.Redis | None = None
        self._started = False
        self._state: CacheState = "disabled" if url is None else "ok"
        self._next_try = 0.0
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.bypassed = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.url is None:
            return
        self._client = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.timeout_s,
            socket_timeout=self.timeout_s,
            # One immediate retry replaces a pooled connection that a restarted server closed;
            # the outer timeout still bounds the whole call.
            retry=Retry(NoBackoff(), 1),
        )
        # Probe now, so /health/detailed is right before the first request. Never fatal.
        await self._call(self._client.ping())

    async def close(self) -> None:
        # Marked started too: requests still in flight at shutdown go on without cache.
        self._started = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> RecognitionCache:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def key(
        self, image_sha256: str, params: Mapping[str, object], model_version: str, generation: int
    ) -> str:
        """The cache key of one recognition request; deterministic across processes."""
        request = {
            "image": image_sha256.lower(),
            "params": dict(params),
            "model_version": model_version,
            "generation": int(generation),
        }
        digest = hashlib.sha256(canonical_json(request).encode()).hexdigest()
        return f"{self.prefix}recognition:{digest}"

    async def get(self, key: str) -> ImageRecognition | None:
        if self._client is None or not self._should_try():
            self._check_started()
            self._bypass()
            return None
        raw = await self._call(self._client.get(key))
        if isinstance(raw, _Failed):
            return None
        if raw is None:
            self.misses += 1
            return None
        try:
            value = ImageRecognition.model_validate_json(raw)
        except ValidationError:
            # Someone else's data under our prefix, a truncated write, or an answer of an
            # older shape: a miss, not a failure.
            log.warning("ignoring a cache entry that is not a recognition answer: %s", key)
            self.misses += 1
            return None
        self.hits += 1
        return value

    async def set(self, key: str, value: ImageRecognition) -> None:
        # Serialised before any I/O, in the canonical spelling, so that every replica and
        # version writes the same bytes for the same answer.
        payload = canonical_json(value.model_dump(mode="json"))
        if self._client is None or not self._should_try():
            self._check_started()
            self._bypass()
            return
        await self._call(self._client.set(key, payload, ex=self.ttl_s))

    def state(self) -> dict[str, Any]:
        return {
            "state": self._state,
            "url": None if self.url is None else redact_url(self.url),
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "bypassed": self.bypassed,
            "last_error": self.last_error,
        }

    def _check_started(self) -> None:
        # A forgotten start() would otherwise look like a healthy cache that never hits.
        if not self._started:
            raise RuntimeError("RecognitionCache used before start()")

    def _bypass(self) -> None:
        if self._state != "disabled":
            self.bypassed += 1

    def _should_try(self) -> bool:
        if self._state == "ok":
            return True
        now = time.monotonic()
        if now < self._next_try:
            return False
        # This caller is the probe; the others skip until it has an answer.
        self._next_try = now + self.retry_s
        return True

    async def _call(self, command: Awaitable[T]) -> T | _Failed:
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await command
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return FAILED
        self._succeeded()
        return result

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self._next_try = time.monotonic() + self.retry_s
        if self._state != "degraded":
            self._state = "degraded"
            log.warning(
                "recognition cache at %s unavailable (%s); serving without cache, retrying every %ss",
                redact_url(self.url or ""),
                self.last_error,
                self.retry_s,
            )

    def _succeeded(self) -> None:
        if self._state == "degraded":
            log.info("recognition cache at %s is back", redact_url(self.url or ""))
        self._state = "ok"
