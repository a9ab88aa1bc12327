"""The neighbour search of reid/rerank.py in torch, on one device (docs/RERANKING.md §3).

The one device-dependent step of a re-ranking: the joint matrix's row blocks are computed on
the device (distances from features by reid.distance's block formula, or rows of the three
given blocks), squared and scaled there for §1, and reduced there to neighbour lists; only the
lists, the row maxima and the query rows come back. The sets, weights and Jaccard distances
are reid/rerank.py's one SciPy implementation. Neighbours follow the same rule (the k smallest,
ties to the lower index), although torch.topk picks freely among equal values (see `nearest_columns`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Protocol

import numpy as np
import torch
from torch import Tensor

from reid import memory

__all__: list[str] = []  # no public names: it is reached through reid.rerank's device=

# Bytes charged per entry of a row block against reid.memory.BUDGET: the float32 block alone, since it
# is squared and scaled in place and torch.topk keeps k columns of it (1 GiB blocks).
_ROW_BYTES = 4


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """float32 matrix products in full precision: TF32 (if a caller enabled it) would change the neighbours."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


# ---------------------------------------------------------------- sources of row blocks on the device

class Rows(Protocol):
    """The joint N x N matrix on a device, a block of rows at a time (none straddles nq)."""

    nq: int
    n: int
    block: int

    def rows(self, start: int, stop: int) -> Tensor:
        """Rows start..stop-1 (all queries or all gallery), a fresh tensor."""


class Host(Protocol):
    """A source of reid.rerank that can copy itself to a device."""

    def on(self, device: torch.device) -> Rows:
        """The same matrix as a source of row blocks on `device`."""


class Features:
    """D as the squared Euclidean distances of x = [queries; gallery], by reid.distance's block formula."""

    def __init__(self, x: Tensor, nq: int, rows: int | None = None) -> None:
        self.x, self.sq = x, torch.einsum("ij,ij->i", x, x)
        self.nq, self.n = nq, len(x)
        self.block = rows or memory.rows(self.n, _ROW_BYTES)

    def rows(self, start: int, stop: int) -> Tensor:
        """|a|^2 + |b|^2 - 2 a.b, clipped at 0, in the order of operations of reid.distance."""
        out = self.x[start:stop] @ self.x.T
        out.mul_(-2).add_(self.sq[start:stop, None]).add_(self.sq[None, :])
        return out.clamp_(min=0)


class Matrices:
    """D from its three blocks q_g, q_q, g_g on the device, in one dtype (a transposed block is a view)."""

    def __init__(self, q_g: Tensor, q_q: Tensor, g_g: Tensor) -> None:
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.nq, self.n = len(q_q), len(q_q) + len(g_g)
        self.block = memory.rows(self.n, _ROW_BYTES)

    def rows(self, start: int, stop: int) -> Tensor:
        """[q_q | q_g] rows for queries, [q_g.T | g_g] rows for gallery images."""
        left, right = (self.q_q, self.q_g) if start < self.nq else (self.q_g.T, self.g_g)
        first = start if start < self.nq else start - self.nq
        last = first + stop - start
        return torch.cat([left[first:last], right[first:last]], dim=1)


def _tensor(a: np.ndarray, device: torch.device, dtype: np.dtype | None = None) -> Tensor:
    """`a` on `device` (as `dtype`); an array with negative strides, which torch cannot wrap, is copied first."""
    a = a if dtype is None else a.astype(dtype, copy=False)
    if any(s < 0 for s in a.strides):
        a = a.copy()
    return torch.from_numpy(a).to(device)


def features_source(x: np.ndarray, nq: int, device: torch.device, rows: int | None = None) -> Features:
    """The source of checked float32 features [queries; gallery] on `device`."""
    return Features(_tensor(x, device), nq, rows)


def matrices_source(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, device: torch.device) -> Matrices:
    """The source of three checked distance blocks on `device`, in their common dtype (as the NumPy path reads them)."""
    dtype = np.result_type(q_g, q_q, g_g)
    return Matrices(*(_tensor(m, device, dtype) for m in (q_g, q_q, g_g)))


def _row_blocks(src: Rows) -> Iterator[tuple[int, int, Tensor]]:
    """(start, stop, rows) for every block of rows; none straddles nq."""
    for start in [*range(0, src.nq, src.block), *range(src.nq, src.n, src.block)]:
        stop = min(start + src.block, src.nq if start < src.nq else src.n)
        yield start, stop, src.rows(start, stop)


def _host(t: Tensor) -> np.ndarray:
    """A tensor as a NumPy array on the host."""
    return t.cpu().numpy()


# ---------------------------------------------------------------- neighbour lists

def nearest_columns(block: Tensor, k: int) -> Tensor:
    """Columns of the k smallest entries of every row, ordered by (value, column).

    torch.topk returns the right values but any of several equal ones, so its k + 1 smallest
    are sorted by (value, column); a row whose k-th value equals the (k + 1)-th may have more
    equal entries outside them, and is redone with a stable sort of the whole row.
    """
    m = block.shape[1]
    k = min(k, m)
    vals, cols = torch.topk(block, min(k + 1, m), dim=1, largest=False)
    cols, order = cols.sort(dim=1)
    vals, order = vals.gather(1, order).sort(dim=1, stable=True)
    cols = cols.gather(1, order)[:, :k]
    if k < m:
        tied = torch.nonzero(vals[:, k - 1] == vals[:, k]).flatten()
        if len(tied):
            cols[tied] = torch.sort(block[tied], dim=1, stable=True).indices[:, :k]
    return cols


class TorchSearch:
    """reid.rerank's `Search` on a torch device: blocks made and reduced there, NumPy arrays returned."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def ranked(self, src: Host, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """§1 steps 1-2 on the rows of `src` squared: (k nearest of each row of O, row maxima, O[:nq, nq:]).

        Squared in the input's dtype, then float32, as reid.rerank squares them.
        """
        with full_precision(), torch.no_grad():
            rows_on = src.on(self.device)
            nq, n = rows_on.nq, rows_on.n
            rank = np.empty((n, min(k, n)), dtype=np.int64)
            top = np.empty(n, dtype=np.float32)
            o_qg = np.empty((nq, n - nq), dtype=np.float32)
            for start, stop, rows in _row_blocks(rows_on):
                rows = rows.square_() if rows.dtype == torch.float32 else rows.square().float()
                t = rows.amax(dim=1)
                t[t == 0] = 1
                rows /= t[:, None]
                rank[start:stop], top[start:stop] = _host(nearest_columns(rows, k)), _host(t)
                if start < nq:
                    o_qg[start:stop] = _host(rows[:, nq:])
        return rank, top, o_qg

    def tables(self, src: Host, k_query: int, k_all: int,
               k_gallery: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """§2 step 1: NQ (joint indices), NA (joint), NG (gallery indices), and q_g as float32."""
        with full_precision(), torch.no_grad():
            rows_on = src.on(self.device)
            nq, n = rows_on.nq, rows_on.n
            ng = n - nq
            q_nbrs = np.empty((nq, k_query), dtype=np.int64)
            a_nbrs = np.empty((ng, k_all), dtype=np.int64)
            g_nbrs = np.empty((ng, k_gallery), dtype=np.int64)
            q_g = np.empty((nq, ng), dtype=np.float32)
            for start, stop, rows in _row_blocks(rows_on):
                if start < nq:
                    q_nbrs[start:stop] = _host(nearest_columns(rows, k_query))
                    q_g[start:stop] = _host(rows[:, nq:])
                else:
                    a_nbrs[start - nq:stop - nq] = _host(nearest_columns(rows, k_all))
                    g_nbrs[start - nq:stop - nq] = _host(nearest_columns(rows[:, nq:], k_gallery))
        return q_nbrs, a_nbrs, g_nbrs, q_g
