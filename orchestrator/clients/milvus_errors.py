"""Milvus's failures as the search client's errors, so the API answers as with the FAISS service:
an RFC 9457 problem in a :class:`SearchServiceError`, :class:`SearchUnavailable` (503) when
Milvus cannot be reached in time."""

from __future__ import annotations

from typing import Any

from orchestrator.clients.search import SearchServiceError, SearchUnavailable
from search_service.errors import PROBLEM_BASE, InvalidInput

NOT_FOUND = 100
"""Milvus's code for a collection that does not exist (``ErrCollectionNotFound``)."""
CONNECT_FAILED = 2
"""pymilvus's code for a server it cannot reach."""


def problem(status: int, slug: str, title: str, detail: str) -> dict[str, Any]:
    return {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}


def _refused_token(error: BaseException | None) -> bool:
    """Whether gRPC said UNAUTHENTICATED somewhere down ``error``'s causes (pymilvus raises
    ``e from e``: a cycle)."""
    import grpc

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAUTHENTICATED:
            return True
        error = error.__cause__ or error.__context__
    return False


def search_error(error: Exception, uri: str) -> SearchServiceError:
    """The search client's error for ``error``, raised by pymilvus (or by the input checks)."""
    from pymilvus.exceptions import MilvusException

    if isinstance(error, InvalidInput):
        return SearchServiceError(422, problem(422, error.slug, "Invalid input", error.detail), uri)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or str(error)
    if _refused_token(error):
        detail = f"the search token was refused: {message}"
        return SearchServiceError(401, problem(401, "unauthorized", "Unauthorized", detail), uri)
    if isinstance(error, MilvusException) and code == NOT_FOUND:
        return SearchServiceError(404, problem(404, "unknown-collection", "Not found", message), uri)
    unreachable = code == CONNECT_FAILED or any(
        word in message.lower() for word in ("connect", "unavailable", "deadline")
    )
    if isinstance(error, MilvusException) and not unreachable:
        return SearchServiceError(500, problem(500, "milvus", "Milvus error", message), uri)
    # Unreachable, timed out, or a gRPC failure below pymilvus's own errors.
    return SearchUnavailable(503, problem(503, "unavailable", type(error).__name__, message), uri)
