"""Pairwise distances between feature sets, computed in row blocks so memory stays bounded.

Every entry is produced by the same block formula whichever way the rows are chunked, so the
re-ranking code can compute any block of a distance matrix on demand and agree with the
whole matrix computed at once (up to the rounding of the matrix product).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from reid import memory
from reid.rules import PositiveInt, checked, finite_matrix

# Bytes charged per entry of a block of the plain matrix: a 1/16 share of the budget (64 MiB blocks of
# float32 products, copied into the output). The share stays as it was, since the block size fixes how
# the products round, and with it every figure made from `sq_euclidean`.
_ROW_BYTES = 64


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


@checked
def sq_euclidean_blocks(a: np.ndarray, b: np.ndarray,
                        rows: PositiveInt | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, block) pairs that tile the squared Euclidean matrix of `a` against `b`."""
    a = finite_matrix(a, "query features")
    b = finite_matrix(b, "gallery features", (None, a.shape[1]), sizes="the query features: feature sizes differ")
    rows = rows or memory.rows(len(b), _ROW_BYTES)
    a_sq, b_sq = sq_norms(a), sq_norms(b)
    for start in range(0, len(a), rows):
        stop = start + rows
        yield start, sq_euclidean_block(a[start:stop], b, a_sq[start:stop], b_sq)


@checked
def sq_euclidean(a: np.ndarray, b: np.ndarray, rows: PositiveInt | None = None) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)), float32."""
    out = np.empty((len(a), len(b)), dtype=np.float32)
    for start, block in sq_euclidean_blocks(a, b, rows):
        out[start:start + len(block)] = block
    return out

