"""A graceful stop behind a load balancer: a replica drains before uvicorn shuts down.

On SIGTERM (or Ctrl-C) the replica keeps serving for ``FACEREC_API__SHUTDOWN_DRAIN_S``
while ``/health/ready`` answers 503, so the load balancer takes it out of rotation, and
every answer carries ``Connection: close``, so clients send their next request on a new
connection, to a replica that stays. Without it a request sent on an idle keep-alive
connection can meet the server closing that connection, and gets no answer at all. Then
uvicorn's own graceful shutdown runs; a second signal skips the rest of the drain.
"""

from __future__ import annotations

import logging
import threading
import time
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class Draining:
    """Whether this replica is on its way out; set once, from the signal handler."""

    def __init__(self) -> None:
        self.since: float | None = None

    @property
    def active(self) -> bool:
        return self.since is not None

    def begin(self) -> None:
        self.since = time.monotonic()


class CloseWhileDraining:
    """Pure ASGI middleware: ``Connection: close`` on every answer while draining."""

    def __init__(self, app: ASGIApp, draining: Draining) -> None:
        self.app = app
        self.draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.draining.active:
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, closing)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose first stop signal starts a drain of ``drain_s`` first."""

    def __init__(self, config: uvicorn.Config, draining: Draining, drain_s: float) -> None:
        super().__init__(config)
        self.draining = draining
        self.drain_s = drain_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_s <= 0 or self.draining.active:
            super().handle_exit(sig, frame)
            return
        self.draining.begin()
        log.info("stop requested: draining for %.1f s, then shutting down", self.drain_s)
        timer = threading.Timer(self.drain_s, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()
