"""Milvus Lite's file served to several processes: ``python -m orchestrator.runtime.milvus_lite``.

Milvus Lite is embedded in the process that opens its file, and it takes a lock on it: one
process only. ``facerec up`` runs several (its API workers and a job worker), so with the
milvus backend and no ``FACEREC_SEARCH__MILVUS_URI`` it runs this server on the file
instead of the FAISS search service, and points them all at it. Two things are added to
Milvus Lite's own gRPC server:

* writes are serialised: Milvus Lite does not support concurrent writers to a collection,
  and each client process serialises only its own;
* a token: every call must carry ``FACEREC_SEARCH_TOKEN`` (pymilvus's ``token``), as the
  FAISS service's calls do, so a local user cannot drop the gallery's collections.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import logging
import os
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from types import FrameType
from typing import Any

import grpc

log = logging.getLogger(__name__)

WRITES = (
    "CreateCollection",
    "DropCollection",
    "Insert",
    "Upsert",
    "Delete",
    "CreateIndex",
    "DropIndex",
    "LoadCollection",
    "ReleaseCollection",
    "Flush",
    "TruncateCollection",
    "CreatePartition",
    "DropPartition",
    "RenameCollection",
    "AlterCollection",
    "ManualCompaction",
)
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class _Token(grpc.ServerInterceptor):
    """Refuses a call whose ``authorization`` metadata is not base64(token), as pymilvus sends it."""

    def __init__(self, token: str) -> None:
        self._expected = base64.b64encode(token.encode()).decode()

        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid FACEREC_SEARCH_TOKEN is required")

        self._refuse = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        sent = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        given = sent.decode() if isinstance(sent, bytes) else sent
        if hmac.compare_digest(given.encode(), self._expected.encode()):
            return continuation(handler_call_details)
        return self._refuse


def serialised_servicer(db: Any) -> Any:
    """Milvus Lite's servicer over ``db`` with its write calls under one lock."""
    from milvus_lite.adapter.grpc.servicer import MilvusServicer

    lock = threading.Lock()

    def locked(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: Any, request: Any, context: Any) -> Any:
            with lock:
                return method(self, request, context)

        return call

    methods = {
        name: locked(getattr(MilvusServicer, name)) for name in WRITES if hasattr(MilvusServicer, name)
    }
    return type("SerialisedMilvusServicer", (MilvusServicer,), methods)(db)


def serve(data_dir: Path, host: str, port: int, token: str | None, workers: int = 8) -> None:
    """Serve ``data_dir`` until SIGTERM or SIGINT, then close it (its WAL is durable already)."""
    from milvus_lite.db import MilvusLite
    from pymilvus.grpc_gen import milvus_pb2_grpc

    db = MilvusLite(str(data_dir))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="milvus-lite"),
        interceptors=[_Token(token)] if token else [],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # pymilvus pings every 10 s, idle or not: accept it rather than answer GOAWAY.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ],
    )
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(serialised_servicer(db), server)
    server.add_insecure_port(f"{host}:{port}")
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.start()
    log.info("Milvus Lite serving %s on %s:%d", data_dir, host, port)
    print(f"Milvus Lite ready on {host}:{port} ({data_dir})", flush=True)
    try:
        stopping.wait()
    finally:
        server.stop(grace=5).wait()
        db.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the Milvus Lite file (a directory)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = os.environ.get("FACEREC_SEARCH_TOKEN") or None
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error(f"FACEREC_SEARCH_TOKEN must be set to listen on {args.host}")
    serve(args.data, args.host, args.port, token)


if __name__ == "__main__":
    main()
