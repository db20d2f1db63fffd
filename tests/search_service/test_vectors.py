"""Wire decoding and validation of vectors and ids."""

from __future__ import annotations

import numpy as np
import pytest

from search_service.errors import InvalidInput
from search_service.vectors import (
    as_ids,
    check_shard,
    decode_vectors,
    encode_vectors,
    normalise,
)

pytestmark = pytest.mark.unit


def test_base64_round_trip() -> None:
    x = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    np.testing.assert_array_equal(decode_vectors(encode_vectors(x), 7), x)
    np.testing.assert_array_equal(decode_vectors(x.tolist(), 7), x)


@pytest.mark.parametrize(
    ("payload", "slug"),
    [
        ("not base64!", "invalid-input"),
        (encode_vectors(np.ones((2, 3))), "invalid-input"),  # 6 floats, dim 4
        ([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]], "dimension-mismatch"),
    ],
)
def test_bad_vectors_are_refused(payload: list[list[float]] | str, slug: str) -> None:
    with pytest.raises(InvalidInput) as err:
        decode_vectors(payload, 4)
    assert err.value.slug == slug


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_refused(bad: float) -> None:
    x = np.ones((3, 4), np.float32)
    x[1, 2] = bad
    with pytest.raises(InvalidInput, match="rows \\[1\\]"):
        normalise(x)


def test_normalise_gives_unit_rows_and_refuses_zero() -> None:
    x = np.array([[3.0, 4.0], [0.0, 2.0]], np.float32)
    np.testing.assert_allclose(np.linalg.norm(normalise(x), axis=1), 1.0, rtol=1e-6)
    with pytest.raises(InvalidInput, match="zero"):
        normalise(np.zeros((1, 2), np.float32))


def test_duplicate_ids_and_shard_ownership() -> None:
    with pytest.raises(InvalidInput, match="duplicate"):
        as_ids([1, 2, 1])
    check_shard(as_ids([1, 4, 7]), (1, 3))
    with pytest.raises(InvalidInput, match="another shard"):
        check_shard(as_ids([1, 2]), (1, 3))
