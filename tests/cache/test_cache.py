from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orchestrator.db.tables import PersonSummary
from orchestrator.recognition.answers import ImageRecognition, Match, RecognizedFace
from orchestrator.recognition.cache import RecognitionCache, redact_url
from orchestrator.runtime.local_valkey import LocalValkey
from orchestrator.runtime.processes import free_port

IMAGE = hashlib.sha256(b"a probe image").hexdigest()
ANN = PersonSummary(id=1, name="Ann", external_id=None, age=None, gender=None, address=None, attributes={})
PARAMS = {"top_k": 5, "threshold": 0.31, "min_face": 40}
ANSWER = ImageRecognition(
    faces=[
        RecognizedFace(
            box=[10.0, 20.0, 130.0, 160.0],
            det_score=0.9987,
            landmarks=[[40.5, 70.0], [90.5, 70.0], [65.0, 95.0], [45.0, 120.0], [85.0, 120.0]],
            quality=0.91,
            decision="match",
            matches=[Match(person_id=1, name="Ann", face_id=7, similarity=0.62, far=0.0012, person=ANN)],
        )
    ],
    model_version="1",
)
STORED = (
    '{"faces":[{"box":[10.0,20.0,130.0,160.0],"decision":"match","det_score":0.9987,'
    '"landmarks":[[40.5,70.0],[90.5,70.0],[65.0,95.0],[45.0,120.0],[85.0,120.0]],'
    '"matches":[{"face_id":7,"far":0.0012,"name":"Ann","person":{"address":null,"age":null,"attributes":{},'
    '"external_id":null,"gender":null,"id":1,"name":"Ann"},"person_id":1,"similarity":0.62}],'
    '"quality":0.91}],'
    '"model_version":"1"}'
)
"""``ANSWER`` as every version of the orchestrator stores it: canonical JSON, sorted keys."""
# Generous against a 0.25 s timeout: proves "never blocks", without being flaky on a busy CI.
CALL_BOUND_S = 1.5


# --- keys -------------------------------------------------------------------------------------


@pytest.mark.unit
def test_key_is_deterministic_and_ignores_parameter_order() -> None:
    cache = RecognitionCache(None)
    reordered = dict(reversed(list(PARAMS.items())))
    assert cache.key(IMAGE, PARAMS, "1", 7) == cache.key(IMAGE, reordered, "1", 7)
    assert cache.key(IMAGE, PARAMS, "1", 7) == RecognitionCache(None).key(IMAGE.upper(), PARAMS, "1", 7)
    assert cache.key(IMAGE, PARAMS, "1", 7).startswith("facerec:")


BASE = (IMAGE, PARAMS, "1", 7)


@pytest.mark.unit
@pytest.mark.parametrize(
    "other",
    [
        (IMAGE, PARAMS, "1", 8),
        (IMAGE, PARAMS, "2", 7),
        (IMAGE, {**PARAMS, "top_k": 6}, "1", 7),
        (IMAGE, {**PARAMS, "extra": True}, "1", 7),
        (IMAGE, {"top_k": 5}, "1", 7),
        (hashlib.sha256(b"another image").hexdigest(), PARAMS, "1", 7),
    ],
    ids=["generation", "model_version", "parameter", "added parameter", "fewer parameters", "image"],
)
def test_key_changes_with_every_part_of_the_request(other: tuple[str, dict[str, object], str, int]) -> None:
    cache = RecognitionCache(None)
    assert cache.key(*BASE) != cache.key(*other)


@pytest.mark.unit
async def test_calls_before_start_are_a_bug_calls_after_close_are_not() -> None:
    cache = RecognitionCache("redis://127.0.0.1:1/0")
    key = cache.key(IMAGE, PARAMS, "1", 1)
    with pytest.raises(RuntimeError, match="start"):
        await cache.get(key)
    await cache.close()
    # Requests still in flight while the app shuts down are served without cache.
    assert await cache.get(key) is None
    await cache.set(key, ANSWER)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache.local:6380/2", "redis://:***@cache.local:6380/2"),
        ("rediss://app:s3cret@[::1]:6379/0", "rediss://app:***@[::1]:6379/0"),
        ("redis://app:s3cret%40x%3Ay@cache:6379/0", "redis://app:***@cache:6379/0"),
        ("redis://app:@cache:6379/0", "redis://app:***@cache:6379/0"),
        ("redis://app@cache:6379/1", "redis://app@cache:6379/1"),
        ("redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/15"),
        ("redis://cache", "redis://cache"),
        ("unix:///run/redis.sock?db=3", "unix:///run/redis.sock?db=3"),
        # Not parseable (the port is not a number): all before the host is hidden.
        ("redis://app:s3cret@cache:port/0", "redis://***@cache:port/0"),
        ("app:s3cret@cache", "***@cache"),
        ("", ""),
    ],
)
def test_redact_url_hides_the_password_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


# --- no cache configured ------------------------------------------------------------------------


@pytest.mark.unit
async def test_no_url_means_disabled() -> None:
    async with RecognitionCache(None) as cache:
        key = cache.key(IMAGE, PARAMS, "1", 1)
        await cache.set(key, ANSWER)
        assert await cache.get(key) is None
        state = cache.state()
    assert state["state"] == "disabled"
    assert state["url"] is None
    assert (state["hits"], state["misses"], state["errors"]) == (0, 0, 0)


# --- against real servers -----------------------------------------------------------------------


@pytest.mark.integration
async def test_round_trip_and_ttl(cache: RecognitionCache, server_url: str) -> None:
    key = cache.key(IMAGE, PARAMS, "1", 3)
    assert await cache.get(key) is None
    await cache.set(key, ANSWER)
    assert await cache.get(key) == ANSWER

    client = redis.Redis.from_url(server_url)
    try:
        ttl = client.ttl(key)
    finally:
        client.close()
    assert 590 <= ttl <= 600

    state = cache.state()
    assert state["state"] == "ok"
    assert (state["hits"], state["misses"], state["errors"]) == (1, 1, 0)


@pytest.mark.integration
async def test_a_new_generation_never_reads_old_answers(cache: RecognitionCache) -> None:
    await cache.set(cache.key(IMAGE, PARAMS, "1", 3), ANSWER)
    assert await cache.get(cache.key(IMAGE, PARAMS, "1", 4)) is None
    assert await cache.get(cache.key(IMAGE, PARAMS, "2", 3)) is None
    assert await cache.get(cache.key(IMAGE, dict(reversed(PARAMS.items())), "1", 3)) == ANSWER


@pytest.mark.integration
async def test_an_entry_that_is_not_json_is_a_miss(cache: RecognitionCache, server_url: str) -> None:
    key = cache.key(IMAGE, PARAMS, "1", 3)
    client = redis.Redis.from_url(server_url)
    try:
        client.set(key, b"\x00not json", ex=60)
    finally:
        client.close()
    assert await cache.get(key) is None
    assert cache.state()["state"] == "ok"


@pytest.mark.integration
async def test_answers_are_stored_as_canonical_json_and_read_back_from_it(
    cache: RecognitionCache, server_url: str
) -> None:
    written, planted = cache.key(IMAGE, PARAMS, "1", 5), cache.key(IMAGE, PARAMS, "1", 6)
    await cache.set(written, ANSWER)
    client = redis.Redis.from_url(server_url)
    try:
        stored = client.get(written)
        client.set(planted, STORED.encode(), ex=60)  # as another replica or version wrote it
    finally:
        client.close()
    assert stored == STORED.encode()
    assert await cache.get(planted) == ANSWER


@pytest.mark.integration
async def test_an_entry_that_is_not_an_answer_is_a_miss(
    cache: RecognitionCache, server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = cache.key(IMAGE, PARAMS, "1", 3)
    client = redis.Redis.from_url(server_url)
    try:
        # JSON, but not a whole answer: no det_score, landmarks or quality.
        client.set(
            key, b'{"faces":[{"box":[1,2,3,4],"decision":"unknown","matches":[]}],"model_version":"1"}', ex=60
        )
    finally:
        client.close()
    with caplog.at_level(logging.WARNING, logger="orchestrator.recognition.cache"):
        assert await cache.get(key) is None
    assert any("not a recognition answer" in r.getMessage() for r in caplog.records)
    state = cache.state()
    assert (state["state"], state["hits"], state["misses"], state["errors"]) == ("ok", 0, 1, 0)


# --- Redis down ---------------------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that completes the handshake but never answers: the read timeout's case."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


@pytest.mark.integration
@pytest.mark.parametrize("down", ["refused", "silent"])
async def test_redis_down_answers_quickly_and_says_degraded(
    down: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    url = (
        f"redis://127.0.0.1:{free_port()}/0"
        if down == "refused"
        else request.getfixturevalue("silent_server")
    )
    # retry_s=0 so every call really goes to the dead server: the bound must hold for each.
    cache = RecognitionCache(url, timeout_s=0.25, retry_s=0.0)
    started = time.monotonic()
    await cache.start()
    assert time.monotonic() - started < CALL_BOUND_S
    try:
        key = cache.key(IMAGE, PARAMS, "1", 1)
        for _ in range(3):
            started = time.monotonic()
            assert await cache.get(key) is None
            assert time.monotonic() - started < CALL_BOUND_S
            started = time.monotonic()
            await cache.set(key, ANSWER)
            assert time.monotonic() - started < CALL_BOUND_S
        state = cache.state()
    finally:
        await cache.close()
    assert state["state"] == "degraded"
    assert state["errors"] == 7
    # Logged once when the state changed, not once per failed request.
    warnings = [
        r
        for r in caplog.records
        if r.name == "orchestrator.recognition.cache" and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1
    assert state["last_error"]
    assert state["hits"] == 0


@pytest.mark.integration
async def test_a_dead_server_is_not_hammered() -> None:
    cache = RecognitionCache(f"redis://127.0.0.1:{free_port()}/0", retry_s=60.0)
    async with cache:
        key = cache.key(IMAGE, PARAMS, "1", 1)
        for _ in range(20):
            assert await cache.get(key) is None
            await cache.set(key, ANSWER)
        state = cache.state()
    assert state["state"] == "degraded"
    assert state["errors"] == 1  # the start-up probe; the 40 calls after it never reached the network
    assert state["bypassed"] == 40


@pytest.mark.integration
async def test_recovers_by_itself_when_redis_comes_back(tmp_path: Path) -> None:
    port = free_port()
    first = LocalValkey(tmp_path / "first", port)
    first.start()
    cache = RecognitionCache(first.url, retry_s=0.3, prefix="facerec-test:")
    try:
        await cache.start()
        key = cache.key(IMAGE, PARAMS, "1", 1)
        await cache.set(key, ANSWER)
        assert await cache.get(key) == ANSWER

        first.stop()
        started = time.monotonic()
        assert await cache.get(key) is None
        assert time.monotonic() - started < CALL_BOUND_S
        assert cache.state()["state"] == "degraded"

        with LocalValkey(tmp_path / "second", port):
            deadline = time.monotonic() + 5.0
            while cache.state()["state"] != "ok" and time.monotonic() < deadline:
                await cache.set(key, ANSWER)
                await asyncio.sleep(0.05)
            assert cache.state()["state"] == "ok"
            await cache.set(key, ANSWER)
            assert await cache.get(key) == ANSWER
            assert cache.state()["hits"] == 2
    finally:
        first.stop()
        await cache.close()
