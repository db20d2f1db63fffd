"""POSTs to one plain-HTTP origin on kept-alive asyncio connections, answers parsed by httptools.

For the search hot path only. httpx spends about half a millisecond of CPU on each call in
pure Python (h11, anyio streams, its client layers): under load a fifth of the
orchestrator's time holding the GIL went to the one search per request. A search is a small
JSON POST to our own service, so it goes out as bytes on a pooled connection and its answer
is parsed by uvicorn's C parser (0.04 ms a call measured). Answers must carry a length or
come in chunks, as uvicorn sends them. Everything else uses httpx.

Failures are ``ConnectionError`` (refused, reset, closed early, or a malformed answer) and
``TimeoutError``. A request that fails on a reused connection before any answer is sent
once more on a new one: the server may close an idle connection as we write (its
keep-alive timeout); posts sent here must be safe to repeat (a search is).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast
from urllib.parse import urlsplit

import httptools

MAX_IDLE = 64
"""Connections kept open for reuse; more are closed once answered."""


class _Connection(asyncio.Protocol):
    """One TCP connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.keep_alive = True
        self.closed = False
        self._body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not asyncio's class

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionError(f"malformed HTTP answer: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError(f"connection closed before the answer{f': {exc}' if exc else ''}"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        status, body = self.parser.get_status_code(), b"".join(self._body)
        self._body = []
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((status, body))

    def _fail(self, error: Exception) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(error)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None and self.answer is None
        self.answer = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(request)
            return await self.answer
        finally:
            self.answer = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class KeepAliveClient:
    """POSTs to ``base_url`` (``http://host:port[/prefix]``) with ``headers`` on each."""

    def __init__(
        self, base_url: str, headers: dict[str, str], *, timeout_s: float, connect_timeout_s: float
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{base_url}: plain http://host[:port] only")
        self.base_url = base_url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self._head = "".join(f"{name}: {value}\r\n" for name, value in {"Host": netloc, **headers}.items())
        self._idle: list[_Connection] = []
        self.opened = 0
        """Connections opened so far: one per concurrent request at most, not one per request."""

    async def post(self, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
        """The status and body of the answer to a POST of ``body`` to ``path``."""
        request = (
            f"POST {self.prefix}{path} HTTP/1.1\r\n{self._head}Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        while True:
            connection, reused = await self._connection()
            try:
                status, answer = await asyncio.wait_for(connection.exchange(request), self.timeout_s)
            except TimeoutError as error:  # its answer may still come, unread
                connection.close()
                raise TimeoutError(f"no answer from {self.base_url} within {self.timeout_s}s") from error
            except ConnectionError:
                connection.close()
                if reused:
                    continue  # closed by the server while idle: once more, on a new one if need be
                raise
            except BaseException:  # cancelled: likewise
                connection.close()
                raise
            if connection.keep_alive and not connection.closed and len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
            else:
                connection.close()
            return status, answer

    async def _connection(self) -> tuple[_Connection, bool]:
        """An idle connection still open, or a new one; and whether it was reused."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection, True
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(_Connection, self.host, self.port), self.connect_timeout_s
            )
        except OSError as error:
            raise ConnectionError(f"cannot connect to {self.base_url}: {error}") from error
        self.opened += 1
        return connection, False

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                connection.close()
