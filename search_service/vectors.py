"""Decoding and validation of vectors and ids arriving over the wire (no FAISS import).

Everything here is pure numpy; the validation errors are :class:`InvalidInput` so the
HTTP layer answers 422 and nothing is changed.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import numpy.typing as npt

from search_service.errors import InvalidInput

Matrix = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]

_LE_F32 = np.dtype("<f4")


def encode_vectors(vectors: npt.ArrayLike) -> str:
    """Base64 of little-endian float32, row-major; ``vectors`` shape (n, dim)."""
    arr = np.ascontiguousarray(vectors, dtype=_LE_F32)
    return base64.b64encode(arr.tobytes()).decode("ascii")


def decode_vectors(payload: list[list[float]] | str, dim: int) -> Matrix:
    """Wire vectors -> float32 array of shape (n, dim); raises :class:`InvalidInput`.

    Base64 input comes back as a read-only view of the decoded bytes (no copy):
    :func:`normalise` makes the one copy that is needed.
    """
    if isinstance(payload, str):
        try:
            # binascii's strict mode validates in C; b64decode(validate=True) uses a regex.
            raw = binascii.a2b_base64(payload, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("vectors is not valid base64") from exc
        if len(raw) % (4 * dim):
            raise InvalidInput(f"base64 vectors hold {len(raw)} bytes, not a multiple of dim*4 = {4 * dim}")
        return np.frombuffer(raw, dtype=_LE_F32).reshape(-1, dim)
    if not payload:
        return np.empty((0, dim), dtype=np.float32)
    bad = next((i for i, row in enumerate(payload) if len(row) != dim), None)
    if bad is not None:
        raise InvalidInput(
            f"vector {bad} has {len(payload[bad])} values, the collection's dim is {dim}",
            slug="dimension-mismatch",
        )
    return np.asarray(payload, dtype=np.float32).reshape(-1, dim)


def normalise(vectors: Matrix) -> Matrix:
    """Finite, non-zero rows scaled to unit L2 norm: a new (n, dim) float32 array.

    Cosine similarity is the inner product of unit vectors, so every vector (stored or
    query) goes through here.
    """
    if not np.isfinite(vectors).all():
        rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        raise InvalidInput(f"vectors contain NaN or infinity (rows {rows[:10].tolist()})", slug="non-finite")
    # float32 sums are exact enough for unit scaling and need no (n, dim) temporary.
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    zero = np.flatnonzero(norms == 0.0)
    if zero.size:
        raise InvalidInput(f"zero vectors cannot be normalised (rows {zero[:10].tolist()})")
    return np.divide(vectors, norms[:, None], dtype=np.float32)


def as_ids(ids: list[int]) -> IdArray:
    """Ids as int64 of shape (n,); duplicates within one request are refused."""
    arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    uniq, counts = np.unique(arr, return_counts=True)
    dup = uniq[counts > 1]
    if dup.size:
        raise InvalidInput(f"duplicate ids in the request: {dup[:10].tolist()}", slug="duplicate-ids")
    return arr


def check_shard(ids: IdArray, shard: tuple[int, int] | None) -> None:
    """Refuse ids that belong to another shard (``id % count != index``)."""
    if shard is None or ids.size == 0:
        return
    index, count = shard
    wrong = ids[ids % count != index]
    if wrong.size:
        raise InvalidInput(
            f"ids {wrong[:10].tolist()} belong to another shard (this is {index}/{count})",
            slug="wrong-shard",
        )
