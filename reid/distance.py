"""Pairwise distances between feature sets, computed in row blocks so memory stays bounded.

Every entry is produced by the same block formula whichever way the rows are chunked, so the
re-ranking code can compute any block of a distance matrix on demand and agree with the
whole matrix computed at once (up to the rounding of the matrix product).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from reid.errors import ReidError

BLOCK_ELEMENTS = 1 << 24  # entries per block (64 MiB of float32)


def as_features(x: np.ndarray, name: str = "features") -> np.ndarray:
    """A float32 (n, d) array of finite values, or a ReidError saying what is wrong."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ReidError(f"{name}: expected a 2-D array (images x dims), got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ReidError(f"{name}: contains NaN or inf")
    return x


def sq_norms(x: np.ndarray) -> np.ndarray:
    """Squared L2 norm of every row, float32."""
    return np.einsum("ij,ij->i", x, x)


def sq_euclidean_block(a: np.ndarray, b: np.ndarray, a_sq: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """|a_i - b_j|^2 as |a_i|^2 + |b_j|^2 - 2 a_i.b_j, clipped at 0 (the expansion can dip below)."""
    out = a @ b.T
    out *= -2
    out += a_sq[:, None]
    out += b_sq[None, :]
    return np.maximum(out, 0, out=out)


def block_rows(n_cols: int, budget: int = BLOCK_ELEMENTS) -> int:
    """How many rows of an (?, n_cols) block fit in `budget` entries (at least one)."""
    return max(1, budget // max(n_cols, 1))


def sq_euclidean_blocks(a: np.ndarray, b: np.ndarray,
                        rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, block) pairs that tile the squared Euclidean matrix of `a` against `b`."""
    a, b = as_features(a, "query features"), as_features(b, "gallery features")
    if a.shape[1] != b.shape[1]:
        raise ReidError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    rows = rows or block_rows(len(b))
    a_sq, b_sq = sq_norms(a), sq_norms(b)
    for start in range(0, len(a), rows):
        stop = start + rows
        yield start, sq_euclidean_block(a[start:stop], b, a_sq[start:stop], b_sq)


def sq_euclidean(a: np.ndarray, b: np.ndarray, rows: int | None = None) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)), float32."""
    out = np.empty((len(a), len(b)), dtype=np.float32)
    for start, block in sq_euclidean_blocks(a, b, rows):
        out[start:start + len(block)] = block
    return out


def joint_lookups(i: Any, j: Any, nq: int, q_q: Any, q_g: Any, g_g: Any) -> Iterator[tuple[Any, Any]]:
    """(selection, values) of D[i, j] from the block that holds each pair: q_q, q_g, q_g
    transposed or g_g. Index arrays and blocks may be NumPy arrays or torch tensors alike."""
    for i_query, j_query, block, transpose in ((True, True, q_q, False), (True, False, q_g, False),
                                               (False, True, q_g, True), (False, False, g_g, False)):
        sel = ((i < nq) == i_query) & ((j < nq) == j_query)
        r, c = i[sel] - (0 if i_query else nq), j[sel] - (0 if j_query else nq)
        yield sel, block[c, r] if transpose else block[r, c]
