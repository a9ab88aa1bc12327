"""Chunked distances against direct formulas."""

from __future__ import annotations

import numpy as np
import pytest

from reid.distance import sq_euclidean, sq_euclidean_blocks
from reid.errors import ReidError


@pytest.mark.parametrize("rows", [None, 1, 3, 1000])
def test_sq_euclidean(rows):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((11, 5))
    expected = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    got = sq_euclidean(a, b, rows=rows)
    assert got.dtype == np.float32 and got.shape == (7, 11)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_blocks_tile_the_matrix():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((10, 4)), rng.standard_normal((6, 4))
    starts = [s for s, _ in sq_euclidean_blocks(a, b, rows=4)]
    assert starts == [0, 4, 8]
    np.testing.assert_array_equal(np.concatenate([blk for _, blk in sq_euclidean_blocks(a, b, rows=4)]),
                                  sq_euclidean(a, b, rows=4))


def test_never_negative_and_zero_on_identical_rows():
    x = np.full((3, 16), 0.1, dtype=np.float32)
    d = sq_euclidean(x, x)
    assert (d >= 0).all() and np.allclose(d, 0, atol=1e-6)


def test_bad_features():
    with pytest.raises(ReidError, match="feature sizes differ"):
        sq_euclidean(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ReidError, match="NaN or inf"):
        sq_euclidean(np.full((2, 3), np.nan), np.ones((2, 3)))
    with pytest.raises(ReidError, match="2-D"):
        sq_euclidean(np.ones(3), np.ones((2, 3)))


def test_blocks_follow_the_memory_budget(monkeypatch):
    """One setting sizes every block: a budget of three rows' worth tiles the matrix in threes, same values."""
    import reid.distance as distance
    import reid.memory as memory
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((10, 4)), rng.standard_normal((6, 4))
    whole = sq_euclidean(a, b)
    monkeypatch.setattr(memory, "BUDGET", 3 * 6 * distance._ROW_BYTES)
    assert [s for s, _ in sq_euclidean_blocks(a, b)] == [0, 3, 6, 9]
    np.testing.assert_allclose(sq_euclidean(a, b), whole, rtol=1e-6, atol=1e-6)
    monkeypatch.setattr(memory, "BUDGET", 1)
    assert memory.entries(64) == 1 and memory.rows(1000, 64) == 1
