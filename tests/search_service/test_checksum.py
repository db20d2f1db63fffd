"""The id checksum: order-independent, combinable across shards, sensitive to ids."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from search_service.checksum import (
    checksum_of_ids,
    combine_checksums,
    hash_ids,
    parse_checksum,
)

pytestmark = pytest.mark.unit

id_sets = st.sets(st.integers(min_value=0, max_value=2**63 - 1), max_size=200)


@given(id_sets, st.integers(min_value=1, max_value=5))
def test_shard_checksums_combine_to_the_whole(ids: set[int], shards: int) -> None:
    arr = np.array(sorted(ids), dtype=np.int64)
    parts = [checksum_of_ids(arr[arr % shards == s]) for s in range(shards)]
    assert combine_checksums(parts) == checksum_of_ids(arr)


@given(id_sets)
def test_order_does_not_matter(ids: set[int]) -> None:
    arr = np.array(sorted(ids), dtype=np.int64)
    assert checksum_of_ids(arr[::-1]) == checksum_of_ids(arr)
    assert parse_checksum(checksum_of_ids(arr))[0] == len(ids)


def test_different_ids_same_count_differ() -> None:
    assert checksum_of_ids([1, 2, 3]) != checksum_of_ids([1, 2, 4])
    assert checksum_of_ids([]) == "0:0000000000000000"


def test_hash_is_injective_on_a_range() -> None:
    hashed = hash_ids(np.arange(100_000))
    assert np.unique(hashed).size == 100_000


def test_malformed_checksum_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_checksum("12")
