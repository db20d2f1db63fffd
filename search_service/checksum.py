"""Order-independent, combinable checksum of a collection's ids (no FAISS import).

Definition (shared by the service and the orchestrator):

* each id ``i`` (a non-negative int64) is hashed with the SplitMix64 finaliser
  ``h(i)`` (a bijection on uint64, so distinct ids never collide);
* ``digest = sum(h(i) for i in ids) mod 2**64``;
* ``checksum = f"{count}:{digest:016x}"``.

Sums mod 2**64 do not depend on order and add up across shards: the checksum of the
union of disjoint shards is ``f"{sum(counts)}:{sum(digests) mod 2**64:016x}"``
(see :func:`combine_checksums`). Adding and deleting ids update the digest in O(batch).
The database side computes :func:`checksum_of_ids` over its face ids and compares.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

_MASK = (1 << 64) - 1


def hash_ids(ids: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """SplitMix64 finaliser of each id; ``ids`` shape (n,) int64 -> (n,) uint64."""
    z = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    # numpy uint64 arithmetic wraps modulo 2**64, which is what SplitMix64 needs.
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def digest_of_ids(ids: npt.ArrayLike) -> int:
    """Sum mod 2**64 of :func:`hash_ids` over ``ids`` (shape (n,))."""
    hashed = hash_ids(ids)
    if hashed.size == 0:
        return 0
    with np.errstate(over="ignore"):
        return int(hashed.sum(dtype=np.uint64)) & _MASK


def format_checksum(count: int, digest: int) -> str:
    """The wire form ``"<count>:<16 hex digits>"``."""
    return f"{count}:{digest & _MASK:016x}"


def parse_checksum(checksum: str) -> tuple[int, int]:
    """Inverse of :func:`format_checksum`; raises ``ValueError`` on a malformed value."""
    count_text, _, digest_text = checksum.partition(":")
    if not digest_text:
        raise ValueError(f"malformed checksum {checksum!r}")
    return int(count_text), int(digest_text, 16)


def checksum_of_ids(ids: npt.ArrayLike) -> str:
    """Checksum of a whole id set, e.g. the face ids in the database."""
    arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    return format_checksum(int(arr.size), digest_of_ids(arr))


def combine_checksums(checksums: Iterable[str]) -> str:
    """Checksum of the union of disjoint id sets (shards) from their checksums."""
    count = 0
    digest = 0
    for value in checksums:
        c, d = parse_checksum(value)
        count += c
        digest = (digest + d) & _MASK
    return format_checksum(count, digest)
