"""The search client's hot path off httpx: searches on kept-alive connections, against a real
search service (the same answers as httpx's, reuse, a restart, its errors) and against
misbehaving servers written here (no answer, a connection closed as it is reused, a
malformed or chunked answer)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx
import numpy as np
import pytest

from orchestrator.clients.keepalive_http import KeepAliveClient
from orchestrator.clients.search import SearchClient, SearchServiceError, SearchUnavailable
from search_service.schema import CollectionSpec
from tests.search_service.conftest import ServiceProcess, unit_vectors

DIM = 64
ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


async def test_searches_answer_as_over_httpx_on_one_kept_alive_connection(service: ServiceProcess) -> None:
    rng = np.random.default_rng(3)
    vectors = unit_vectors(rng, 200, DIM)
    plain = SearchClient([service.url], token=service.token, transport=httpx.AsyncHTTPTransport())
    async with SearchClient([service.url], token=service.token) as fast, plain:
        await fast.create_collection("faces", CollectionSpec(dim=DIM))
        await fast.add("faces", np.arange(200), vectors)
        queries = vectors[:8] + 0.05 * unit_vectors(rng, 8, DIM)
        expected = await plain.search("faces", queries, 5)
        assert await fast.search("faces", queries, 5) == expected
        assert [hits[0].id for hits in expected] == list(range(8))
        searcher = fast._searchers[0] if fast._searchers else None
        assert searcher is not None
        for i in range(20):
            assert (await fast.search("faces", vectors[i : i + 1], 1))[0][0].id == i
        assert searcher.opened == 1  # every search so far on the same connection
        found = await asyncio.gather(*(fast.search("faces", vectors[i : i + 1], 1) for i in range(8)))
        assert [hits[0][0].id for hits in found] == list(range(8))
        opened = searcher.opened
        assert opened <= 8
        for i in range(10):
            await fast.search("faces", vectors[i : i + 1], 1)
        assert searcher.opened == opened  # the pool is reused, not grown


async def test_a_restarted_service_is_searched_on_a_new_connection(service: ServiceProcess) -> None:
    vectors = unit_vectors(np.random.default_rng(5), 50, DIM)
    async with SearchClient([service.url], token=service.token, timeout=5) as client:
        await client.create_collection("faces", CollectionSpec(dim=DIM))
        await client.add("faces", np.arange(50), vectors)
        assert (await client.search("faces", vectors[7:8], 1))[0][0].id == 7
        service.kill()
        with pytest.raises(SearchUnavailable) as down:
            await client.search("faces", vectors[7:8], 1)
        assert down.value.status == 503 and service.url in str(down.value)
        service.start().wait_ready()
        # Its vectors were flushed on add: the first search after the restart answers.
        assert (await client.search("faces", vectors[7:8], 1))[0][0].id == 7
        with pytest.raises(SearchServiceError) as missing:
            await client.search("nobody", vectors[:1], 1)
        assert missing.value.status == 404 and missing.value.problem["status"] == 404
    async with SearchClient([service.url], token="not-the-token-" + "x" * 20) as stranger:
        with pytest.raises(SearchServiceError) as refused:
            await stranger.search("faces", vectors[:1], 1)
        assert refused.value.status == 401 and not isinstance(refused.value, SearchUnavailable)


@contextlib.asynccontextmanager
async def raw_server(
    handle: Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], object],
) -> AsyncIterator[tuple[str, list[int]]]:
    """A TCP server calling ``handle(connection number, reader, writer)``; its URL and the
    numbers of the connections it accepted."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted))
        try:
            await handle(accepted[-1], reader, writer)  # type: ignore[misc]
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", accepted


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


async def test_no_answer_in_time_is_a_timeout() -> None:
    async def silent(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with raw_server(silent) as (url, _):
        client = KeepAliveClient(url, {}, timeout_s=0.3, connect_timeout_s=1)
        with pytest.raises(TimeoutError):
            await client.post("/search", b"{}")
        async with SearchClient([url], timeout=0.3) as search:
            with pytest.raises(SearchUnavailable):
                await search.search("faces", np.zeros((1, DIM)), 1)


async def test_a_connection_closed_as_it_is_reused_is_retried_on_a_new_one() -> None:
    requests: list[bytes] = []

    async def once(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await read_request(reader))
        writer.write(ANSWER)  # kept alive, as HTTP/1.1 is by default
        await writer.drain()
        if number == 0:
            await read_request(reader)  # the second request: closed unanswered, as at a keep-alive timeout
            return
        await asyncio.sleep(1)

    async with raw_server(once) as (url, accepted):
        client = KeepAliveClient(url, {"Authorization": "Bearer t"}, timeout_s=2, connect_timeout_s=1)
        assert await client.post("/search", b'{"k":1}') == (200, b'{"ok":true}')
        assert await client.post("/search", b'{"k":2}') == (200, b'{"ok":true}')
        assert accepted == [0, 1] and client.opened == 2
        await client.aclose()
    assert (
        requests[0].startswith(b"POST /search HTTP/1.1\r\n") and b"Authorization: Bearer t\r\n" in requests[0]
    )
    assert requests[0].endswith(b'\r\n\r\n{"k":1}') and requests[1].endswith(b'\r\n\r\n{"k":2}')


async def test_a_refused_new_connection_is_not_retried() -> None:
    async with raw_server(lambda *args: asyncio.sleep(0)) as (url, _):
        pass  # closed: nothing listens on its port any more
    client = KeepAliveClient(url, {}, timeout_s=1, connect_timeout_s=1)
    with pytest.raises(ConnectionError, match="cannot connect"):
        await client.post("/search", b"{}")
    assert client.opened == 0


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n',
            b'{"a":1}',
        ),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}", b"{}"),
    ],
)
async def test_answers_framed_by_length_or_chunks(answer: bytes, expected: bytes) -> None:
    async def reply(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(1)

    async with raw_server(reply) as (url, _):
        client = KeepAliveClient(url, {}, timeout_s=2, connect_timeout_s=1)
        status, body = await client.post("/x", b"{}")
        assert (status, body) == (int(answer.split()[1]), expected)
        await client.aclose()


async def test_a_malformed_answer_is_a_connection_error() -> None:
    async def garbage(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with raw_server(garbage) as (url, _):
        client = KeepAliveClient(url, {}, timeout_s=2, connect_timeout_s=1)
        with pytest.raises(ConnectionError, match="malformed"):
            await client.post("/x", b"{}")
        async with SearchClient([url]) as search:
            with pytest.raises(SearchUnavailable):
                await search.search("faces", np.zeros((1, DIM)), 1)


def test_only_plain_http_takes_the_fast_path() -> None:
    with pytest.raises(ValueError, match="plain http"):
        KeepAliveClient("https://search:8443", {}, timeout_s=1, connect_timeout_s=1)
    assert SearchClient(["https://search:8443"])._searchers is None
    assert (
        SearchClient(["http://s0:1", "http://s1:2"], transport=httpx.MockTransport(lambda r: None))._searchers
        is None
    )
    client = KeepAliveClient("http://search:9000/prefix/", {"X": "1"}, timeout_s=1, connect_timeout_s=1)
    assert (client.host, client.port, client.prefix) == ("search", 9000, "/prefix")
