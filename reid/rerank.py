"""k-reciprocal re-ranking, original and hard-weight (docs/RERANKING.md §1-§3), exact and memory-bounded.

Both methods depend on the distances only through each image's nearest neighbours, the
distances to a few of them, and the query x gallery block (§3). So a *source* hands out the
joint N x N matrix a block of rows at a time, and single entries on demand: `JointMatrices`
reads it from the three blocks, `JointFeatures` computes it from features. Each step has one
implementation, which runs on either source:

    neighbour lists -> k-reciprocal sets -> expansion -> local query expansion -> Jaccard -> blend

Only the first step depends on where it runs (fast-reid's `compute_dist` model: one set logic
over a pluggable search). A `Search` makes the row blocks and reduces them to neighbour lists:
`HostSearch` with NumPy, or with `device=` ("cpu", "cuda", a torch.device)
`reid.rerank_torch.TorchSearch` in torch on that device. Everything after the neighbour lists
is the SciPy code below, whatever the device. Sets and weights are sparse matrices (scipy
CSR): nothing N x N is held besides the inputs. §6 of docs/RERANKING.md follows a 4 x 6
example through every step.

Neighbours are the k smallest distances with ties broken by the lower index (a stable sort).
The public port uses numpy's unstable argsort, so where two distances are exactly equal its
choice is unspecified; everywhere else both pick the same neighbours.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Literal, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from reid import memory, rerank_torch
from reid.device import resolve_device
from reid.distance import sq_euclidean, sq_euclidean_block, sq_norms
from reid.errors import ReidError
from reid.rules import PositiveInt, Probability, checked, finite_matrix

# Bytes charged per entry against reid.memory.BUDGET:
_FEATURE_ROW_BYTES = 16  # a block of distances from features: _WORKERS blocks at once, each float32 and
# up to as much again in temporaries (256 MiB blocks)
_MATRIX_ROW_BYTES = 256  # a block of rows copied from the given matrices: a 1/64 share (16 MiB blocks), as
# the caller already holds those matrices (bench.rerank_speed: a peak of about 60 MiB beside them)
_JACCARD_BYTES = 64  # a (query rows x gallery) block of min-sums: float64 sums, their Jaccard, the blend's temporaries
_PAIR_BYTES = 1 << 14  # a pair whose distance is computed from features: its two rows, up to 2,048 dims
# Tuning for speed, not memory budgets:
_TRIPLES = 1 << 17  # (query, shared column, gallery) triples per chunk of the Jaccard step: fits in cache
_RECIPROCAL_ROWS = 1 << 10  # rows per chunk of the reciprocity test: its (rows, k, k) gather fits in cache
_WORKERS = 2  # blocks processed at once: numpy copies, BLAS and torch's top-k release the GIL
_STRIP = 512  # columns per strip when copying rows out of a transposed (column-major) matrix
_SEGMENT = 32  # columns per segment when picking the candidates for the k smallest of a wide row

__all__ = ["KINDS", "Device", "Method", "RerankInput", "k_reciprocal", "hard_weight", "rerank_features",
           "distance_matrices", "reciprocal_vectors", "smallest", "merge_smallest"]

Accept = Callable[[np.ndarray, np.ndarray], np.ndarray]
Device = str | torch.device  # where the neighbour search runs: "cpu", "cuda", "cuda:1", a torch.device
Method = Literal["k_reciprocal", "hard_weight"]
RerankInput = Literal["squared", "euclidean"]  # the distances a re-ranking is fed (distance_matrices)


# ---------------------------------------------------------------- sources of the joint matrix

class Entries(Protocol):
    """A distance matrix read at index pairs (what the weights of §1 need)."""

    def entries(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """D[i, j] for index arrays."""


class Joint(Entries, Protocol):
    """The joint N x N matrix D = [[queries x queries, queries x gallery], [gallery x queries, gallery x gallery]]."""

    nq: int
    n: int
    block: int

    def transposed(self) -> Joint:
        """D.T as a source."""

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 (all queries or all gallery) as a fresh C-ordered array."""

    def on(self, device: torch.device) -> rerank_torch.Rows:
        """The same matrix as a source of torch row blocks on `device`."""


def _copy_rows(out: np.ndarray, m: np.ndarray, start: int) -> None:
    """out[:] = m[start:start + len(out)]; a column-major m is read in strips (a strided copy is cache-bound)."""
    part = m[start:start + len(out)]
    if m.strides[0] >= m.strides[1]:
        out[:] = part
        return
    for s in range(0, part.shape[1], _STRIP):
        out[:, s:s + _STRIP] = part[:, s:s + _STRIP]


class JointMatrices:
    """D from its three blocks q_g, q_q, g_g, in any memory layout (transposing is free)."""

    def __init__(self, q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> None:
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.nq, self.n = len(q_q), len(q_q) + len(g_g)
        self.block = memory.rows(self.n, _MATRIX_ROW_BYTES)

    def transposed(self) -> JointMatrices:
        """D.T = [[q_q.T, q_g], [q_g.T, g_g.T]]: the joint matrix of (q_g, q_q.T, g_g.T), nothing copied."""
        return JointMatrices(self.q_g, self.q_q.T, self.g_g.T)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 (all queries or all gallery): [q_q | q_g] or [q_g.T | g_g] rows."""
        nq = self.nq
        out = np.empty((stop - start, self.n), dtype=np.result_type(self.q_g, self.q_q, self.g_g))
        left, right = (self.q_q, self.q_g) if start < nq else (self.q_g.T, self.g_g)
        first = start if start < nq else start - nq
        _copy_rows(out[:, :nq], left, first)
        _copy_rows(out[:, nq:], right, first)
        return out

    def entries(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """D[i, j] for index arrays, read from whichever block holds each pair (q_q, q_g, q_g transposed, g_g)."""
        nq = self.nq
        out = np.empty(len(i), dtype=np.result_type(self.q_g, self.q_q, self.g_g))
        for i_query, j_query, block, transpose in ((True, True, self.q_q, False), (True, False, self.q_g, False),
                                                   (False, True, self.q_g, True), (False, False, self.g_g, False)):
            sel = ((i < nq) == i_query) & ((j < nq) == j_query)
            r, c = i[sel] - (0 if i_query else nq), j[sel] - (0 if j_query else nq)
            out[sel] = block[c, r] if transpose else block[r, c]
        return out

    def on(self, device: torch.device) -> rerank_torch.Matrices:
        """The three blocks copied to `device`."""
        return rerank_torch.matrices_source(self.q_g, self.q_q, self.g_g, device)


class JointFeatures:
    """D as the squared Euclidean distances of x = [queries; gallery], computed a block of rows at a time.

    `rows`: rows per block (default: from the memory budget); `pairs`: pairs per chunk of `entries`.
    """

    def __init__(self, x: np.ndarray, nq: int, rows: int | None = None, pairs: int | None = None) -> None:
        self.x, self.x_sq = x, sq_norms(x)
        self.nq, self.n = nq, len(x)
        self.asked = rows
        self.block = rows or memory.rows(self.n, _FEATURE_ROW_BYTES)
        self.pairs = pairs or memory.entries(_PAIR_BYTES)

    def transposed(self) -> JointFeatures:
        """The distance is symmetric: D.T is D (up to the rounding of the matrix product)."""
        return self

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1, by the block formula of reid.distance."""
        return sq_euclidean_block(self.x[start:stop], self.x, self.x_sq[start:stop], self.x_sq)

    def on(self, device: torch.device) -> rerank_torch.Features:
        """The features copied to `device`, in blocks of the rows asked for (else the device's budget)."""
        return rerank_torch.features_source(self.x, self.nq, device, self.asked)

    def entries(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """D[i, j] for index arrays, by the same formula as the blocks, `pairs` pairs at a time."""
        x, x_sq, chunk = self.x, self.x_sq, self.pairs
        out = np.empty(len(i), dtype=np.float32)
        for s in range(0, len(i), chunk):
            r, c = i[s:s + chunk], j[s:s + chunk]
            d = np.einsum("ij,ij->i", x[r], x[c])
            d *= -2
            d += x_sq[r]
            d += x_sq[c]
            out[s:s + chunk] = np.maximum(d, 0)
        return out


def _scan(src: Joint, visit: Callable[[int, int, np.ndarray], None]) -> None:
    """visit(start, stop, rows) on every block of rows (none straddles nq), _WORKERS blocks at once."""
    def one(start: int) -> None:
        stop = min(start + src.block, src.nq if start < src.nq else src.n)
        visit(start, stop, src.rows(start, stop))

    starts = [*range(0, src.nq, src.block), *range(src.nq, src.n, src.block)]
    with ThreadPoolExecutor(_WORKERS) as pool:
        list(pool.map(one, starts))


# ---------------------------------------------------------------- neighbour lists

@checked
def smallest(block: np.ndarray, k: PositiveInt, scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Columns and values of the k smallest entries of every row, ordered by (value, column).

    With `scale`, the values ranked are block / scale[:, None] as float division rounds them,
    computed for the candidates only. A row whose k-th value ties with an entry outside the
    candidates is redone exactly, so the result never depends on how candidates are picked.
    """
    k = min(k, block.shape[1])
    cols, vals, bound = _candidates(block, k)
    if scale is not None:
        vals, bound = vals / scale[:, None], bound / scale
    idx, vals = merge_smallest(cols, vals, k)
    tied = np.flatnonzero(vals[:, k - 1] >= bound)
    if tied.size:
        rows = block[tied] if scale is None else block[tied] / scale[tied, None]
        idx[tied], vals[tied] = _smallest_exact(rows, vals[tied, k - 1], k)
    return idx, vals


def _candidates(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: candidate (columns, values), padded with (n_cols, inf), and a bound.

    Every entry below the bound is a candidate, none left out is below it, and at least k
    candidates are at most the bound. Narrow rows take torch's top-k of k + 1 (the bound is the
    last). Wide rows are cut into segments of _SEGMENT columns: the (k + 1)-th smallest segment
    minimum is the bound, and only the segments whose minimum is at most it are read again,
    a fraction of the work of a top-k over the whole row.
    """
    n, m = block.shape
    n_seg = m // _SEGMENT
    if n_seg < 4 * (k + 1):
        vals, cols = torch.topk(torch.from_numpy(block), min(k + 1, m), dim=1, largest=False)
        vals, cols = vals.numpy(), cols.numpy()
        return cols, vals, (vals[:, -1] if k < m else np.full(n, np.inf, dtype=vals.dtype))
    body = block[:, :n_seg * _SEGMENT].reshape(n, n_seg, _SEGMENT)
    seg_min = torch.from_numpy(body).amin(dim=2).numpy()
    bound = np.partition(seg_min, k, axis=1)[:, k]
    rows, segs = np.nonzero(seg_min <= bound[:, None])
    pick, offset = np.nonzero(body[rows, segs] <= bound[rows, None])
    seg_rows, tail_start = rows[pick], n_seg * _SEGMENT
    tail_rows, tail_offset = np.nonzero(block[:, tail_start:] <= bound[:, None])
    rows = np.concatenate([seg_rows, tail_rows])
    cols = np.concatenate([segs[pick] * _SEGMENT + offset, tail_start + tail_offset])
    slot = np.concatenate([_slots(seg_rows), _slots(tail_rows) + np.bincount(seg_rows, minlength=n)[tail_rows]])
    table_cols = np.full((n, slot.max() + 1), m, dtype=np.int64)
    table_vals = np.full((n, slot.max() + 1), np.inf, dtype=block.dtype)
    table_cols[rows, slot] = cols
    table_vals[rows, slot] = block[rows, cols]
    return table_cols, table_vals, bound


def _slots(rows: np.ndarray) -> np.ndarray:
    """The position of each entry among the entries of its row, for sorted row numbers."""
    return np.arange(len(rows)) - np.searchsorted(rows, rows)


def _smallest_exact(block: np.ndarray, kth: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`smallest` for rows whose k-th value is tied: every candidate sorted by (value, column)."""
    r, c = np.nonzero(block <= kth[:, None])
    v = block[r, c]
    order = np.lexsort((c, v, r))
    r, c, v = r[order], c[order], v[order]
    keep = np.arange(len(r)) - np.searchsorted(r, r) < k
    return c[keep].reshape(-1, k), v[keep].reshape(-1, k)


@checked
def merge_smallest(idx: np.ndarray, vals: np.ndarray, k: PositiveInt) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest of per-row candidate lists (distinct columns), ordered by (value, column)."""
    order = np.lexsort((idx, vals), axis=1)[:, :k]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)


# ---------------------------------------------------------------- the neighbour search

class Search(Protocol):
    """Makes the row blocks of a joint matrix and reduces them to neighbour lists: the one step of a
    re-ranking that depends on the device. Each method reads every row once and returns NumPy arrays."""

    def ranked(self, src: Joint, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """§1 steps 1-2 on the rows of `src` squared: (k nearest of each row of O, row maxima, O[:nq, nq:])."""

    def tables(self, src: Joint, k_query: int, k_all: int,
               k_gallery: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """§2 step 1: NQ (k_query nearest of each query, joint indices), NA (k_all of each gallery image,
        joint), NG (k_gallery of each gallery image among the gallery, gallery indices), q_g as float32."""


def _squared(d: np.ndarray) -> np.ndarray:
    """d**2 as float32, rounded as the port rounds it (square in the input type, then cast); in place for float32."""
    if d.dtype == np.float32:
        return np.square(d, out=d)
    return np.square(d).astype(np.float32)


def _row_max(o: np.ndarray) -> np.ndarray:
    """The maximum of each row, 1 for an all-zero row (which then stays zero when divided)."""
    top = o.max(axis=1)
    top[top == 0] = 1
    return top


class HostSearch:
    """The search with NumPy, _WORKERS blocks at once."""

    def ranked(self, src: Joint, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """§1 steps 1-2 (see `Search`)."""
        nq, n = src.nq, src.n
        rank = np.empty((n, min(k, n)), dtype=np.int64)
        top = np.empty(n, dtype=np.float32)
        o_qg = np.empty((nq, n - nq), dtype=np.float32)

        def visit(start: int, stop: int, rows: np.ndarray) -> None:
            rows = _squared(rows)
            t = top[start:stop] = _row_max(rows)
            rank[start:stop] = smallest(rows, k, scale=t)[0]
            if start < nq:
                np.divide(rows[:, nq:], t[:, None], out=o_qg[start:stop])

        _scan(src, visit)
        return rank, top, o_qg

    def tables(self, src: Joint, k_query: int, k_all: int,
               k_gallery: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """§2 step 1 (see `Search`)."""
        nq, n = src.nq, src.n
        ng = n - nq
        q_nbrs = np.empty((nq, k_query), dtype=np.int64)
        a_nbrs = np.empty((ng, k_all), dtype=np.int64)
        g_nbrs = np.empty((ng, k_gallery), dtype=np.int64)
        q_g = np.empty((nq, ng), dtype=np.float32)

        def visit(start: int, stop: int, rows: np.ndarray) -> None:
            if start < nq:
                q_nbrs[start:stop] = smallest(rows, k_query)[0]
                q_g[start:stop] = rows[:, nq:]
            else:
                a_nbrs[start - nq:stop - nq] = smallest(rows, k_all)[0]
                g_nbrs[start - nq:stop - nq] = smallest(rows[:, nq:], k_gallery)[0]

        _scan(src, visit)
        return q_nbrs, a_nbrs, g_nbrs, q_g


def _search(device: Device | None) -> Search:
    """The NumPy search for None, else the torch search on that device (checked: a ReidError names a bad one)."""
    return HostSearch() if device is None else rerank_torch.TorchSearch(resolve_device(device))


# ---------------------------------------------------------------- sets, as 0/1 CSR matrices

def _is_reciprocal(nbrs: np.ndarray) -> np.ndarray:
    """mask[i, m]: whether i is itself among the neighbours of its m-th neighbour nbrs[i, m]."""
    mask = np.empty(nbrs.shape, dtype=bool)
    rows = _RECIPROCAL_ROWS
    for start in range(0, len(nbrs), rows):
        part = nbrs[start:start + rows]
        own = np.arange(start, start + len(part))[:, None, None]
        mask[start:start + rows] = (nbrs[part] == own).any(axis=2)
    return mask


def _sets(nbrs: np.ndarray, mask: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """The sets nbrs[i][mask[i]] as the rows of a 0/1 matrix."""
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))])
    return sp.csr_matrix((np.ones(indptr[-1], dtype=np.int32), nbrs[mask], indptr), shape=(len(nbrs), n_cols))


def _reciprocal_sets(nbrs: np.ndarray, n_cols: int, without_self: bool = False) -> sp.csr_matrix:
    """Row i: the j among nbrs[i] that have i among nbrs[j] (the k-reciprocal neighbours), optionally not i."""
    mask = _is_reciprocal(nbrs)
    if without_self:
        mask &= nbrs != np.arange(len(nbrs))[:, None]
    return _sets(nbrs, mask, n_cols)


def _expand(base: sp.csr_matrix, half: sp.csr_matrix, accept: Accept) -> sp.csr_matrix:
    """Each set base[i] united with the half sets half[c] of its members that `accept(overlap, size)` lets in.

    overlap = |base[i] & half[c]|, counted against the sets before any expansion: the entry
    (i, c) of base @ half.T. One is added before masking by base, so no member's count drops out.
    """
    overlap = base.multiply(base @ half.T + base).tocsr()
    sizes = np.diff(half.indptr)
    taken = sp.csr_matrix((accept(overlap.data - 1, sizes[overlap.indices]).astype(np.int32), overlap.indices,
                           overlap.indptr), shape=overlap.shape)
    taken.eliminate_zeros()
    return _union(base, taken @ half)


def _union(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    """The sets a[i] | b[i], as a 0/1 matrix."""
    out = (a + b).tocsr()
    out.data[:] = 1
    return out


def _mean_rows(nbrs: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """The averaging operator: row i holds 1/k at each of its k neighbours."""
    n, k = nbrs.shape
    data = np.full(n * k, 1.0 / k)
    return sp.csr_matrix((data, nbrs.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n_cols))


def _query_expansion(v: sp.csr_matrix, nbrs: np.ndarray) -> sp.csr_matrix:
    """Local query expansion: row i becomes the mean of the rows nbrs[i] of v (computed from v, not in place)."""
    return (_mean_rows(nbrs, v.shape[0]) @ v).tocsr()


# ---------------------------------------------------------------- Jaccard and blend

def _min_sums(a: sp.csr_matrix, b: sp.csc_matrix) -> np.ndarray:
    """Dense (a.rows, b.rows) of sum_c min(a[i, c], b[j, c]) over the columns c both use.

    Each non-zero a[i, c] meets the non-zeros of column c of b: one (i, c, j) triple each,
    expanded with repeat/arange and summed into the dense block with one bincount.
    """
    n_b = b.shape[0]
    counts = np.diff(b.indptr)[a.indices]
    ends = np.cumsum(counts)
    pos = np.arange(ends[-1] if len(ends) else 0, dtype=np.int64)
    pos += np.repeat(b.indptr[a.indices] - (ends - counts), counts)
    vals = np.minimum(np.repeat(a.data, counts), b.data.take(pos))
    keys = np.repeat(np.repeat(np.arange(a.shape[0], dtype=np.int64) * n_b, np.diff(a.indptr)), counts)
    keys += b.indices.take(pos)
    return np.bincount(keys, weights=vals, minlength=a.shape[0] * n_b).reshape(a.shape[0], n_b)


def _jaccard_blocks(vq: sp.csr_matrix, vg: sp.csr_matrix) -> Iterator[tuple[slice, np.ndarray]]:
    """(query rows, min-sum block against every gallery row), in chunks of bounded work."""
    b = vg.tocsc()
    row_of_entry = np.repeat(np.arange(vq.shape[0]), np.diff(vq.indptr))
    work = np.bincount(row_of_entry, weights=np.diff(b.indptr)[vq.indices], minlength=vq.shape[0])
    done = np.concatenate([[0], np.cumsum(work)])
    bounds = np.searchsorted(done, np.arange(0, done[-1], _TRIPLES), side="right") - 1
    cap = memory.rows(vg.shape[0], _JACCARD_BYTES)
    bounds = np.unique(np.concatenate([bounds, np.arange(0, vq.shape[0], cap), [vq.shape[0]]]))
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        yield slice(start, stop), _min_sums(vq[start:stop], b)


def _jaccard(mins: np.ndarray, q_mass: np.ndarray, g_mass: np.ndarray) -> np.ndarray:
    """1 - sum(min) / sum(max) of non-negative vectors, as sum(max) = sum(a) + sum(b) - sum(min)."""
    return 1 - mins / (q_mass[:, None] + g_mass[None, :] - mins)


def _row_sums(v: sp.csr_matrix) -> np.ndarray:
    """The sum of every row, as a flat array."""
    return np.asarray(v.sum(axis=1)).ravel()


def _blend(out: np.ndarray, vq: sp.csr_matrix, vg: sp.csr_matrix, lambda_value: float, q_mass: np.ndarray,
           g_mass: np.ndarray, original: Callable[[np.ndarray], np.ndarray] = np.asarray) -> np.ndarray:
    """out = lambda * original(out) + (1 - lambda) * the Jaccard distances of the rows of vq and vg, a chunk of
    rows at a time (so that `original`, applied row by row, needs no second queries x gallery array)."""
    for rows, mins in _jaccard_blocks(vq, vg):
        out[rows] = lambda_value * original(out[rows]) + (1 - lambda_value) * _jaccard(mins, q_mass[rows], g_mass)
    return out


# ---------------------------------------------------------------- §1 k-reciprocal

def _weights(sets: sp.csr_matrix, dist: Entries, top: np.ndarray) -> sp.csr_matrix:
    """§1 step 5: exp(-O[i, j]) over each set, normalised to sum 1 per row (O = dist squared / row maximum)."""
    rows = np.repeat(np.arange(sets.shape[0]), np.diff(sets.indptr))
    w = np.exp(-(_squared(dist.entries(rows, sets.indices)) / top[rows])).astype(np.float64)
    w /= np.bincount(rows, weights=w, minlength=sets.shape[0])[rows]
    return sp.csr_matrix((w, sets.indices, sets.indptr), shape=sets.shape)


@checked
def reciprocal_vectors(rank: np.ndarray, k1: PositiveInt, k2: PositiveInt, dist: Entries,
                       top: np.ndarray) -> sp.csr_matrix:
    """The k-reciprocal vectors V of §1 steps 3-6 for all N images, from their neighbour lists: (N, N) CSR.

    `rank[i]`: the nearest images of image i in O, nearest first (i itself first where it is its
    own nearest), at least max(k1 + 1, k2) of them where there are; `dist.entries(i, j)`: D at
    index pairs; `top[i]`: the maximum of row i of D squared, so that O = D squared / top. Each
    row of V sums to one, or is empty where the image is not among the neighbours of its own
    neighbours. The re-ranking of §1 and the clustering of reid/clustering.py both build V here.
    """
    n = len(rank)
    half = int(np.around(k1 / 2))
    sets = _expand(_reciprocal_sets(rank[:, :k1 + 1], n), _reciprocal_sets(rank[:, :half + 1], n),
                   lambda overlap, size: overlap > 2 / 3 * size)
    v = _weights(sets, dist, top)
    if k2 != 1:
        v = _query_expansion(v, rank[:, :k2])
    return v


def _k_reciprocal(src: Joint, k1: int, k2: int, lambda_value: float, search: Search) -> np.ndarray:
    """§1 on a source of D (O, the matrix ranked, is D.T squared and divided by its row maxima).

    Every row of V counts as summing to one, so sum(max) is the 2 - sum(min) of §1 step 7.
    """
    src = src.transposed()
    rank, top, out = search.ranked(src, max(k1 + 1, k2))
    v = reciprocal_vectors(rank, k1, k2, src, top)
    ones = np.ones(src.n)
    return _blend(out, v[:src.nq], v[src.nq:], lambda_value, ones[:src.nq], ones[src.nq:])


def _matrices(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> JointMatrices:
    """The source of three real-valued, finite, consistently shaped distance blocks (integers become float64)."""
    q_g = finite_matrix(q_g, "q_g", dtype=None)
    if q_g.size == 0:
        raise ReidError(f"need at least one query and one gallery image, got q_g {q_g.shape}")
    nq, ng = q_g.shape
    q_q = finite_matrix(q_q, "q_q", (nq, nq), dtype=None, sizes="the queries of q_g: distance shapes disagree")
    g_g = finite_matrix(g_g, "g_g", (ng, ng), dtype=None, sizes="the gallery of q_g: distance shapes disagree")
    return JointMatrices(q_g, q_q, g_g)


@checked
def k_reciprocal(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: PositiveInt = 20, k2: PositiveInt = 6,
                 lambda_value: Probability = 0.3, device: Device | None = None) -> np.ndarray:
    """k-reciprocal re-ranking of three distance blocks (§1): float32 (nq, ng).

    The same numbers as the public port, up to float32 rounding of sums, without its five
    dense N x N arrays: the joint matrix is squared, normalised and ranked a block of rows at a
    time, and only each row's k1 + 1 nearest neighbours are kept. With `device`, the blocks are
    copied there and squared, normalised and ranked in torch; the rest runs here.
    """
    src = _matrices(q_g, q_q, g_g)
    return _k_reciprocal(src, k1, k2, lambda_value, _search(device))


# ---------------------------------------------------------------- §2 hard weight

def _row_normalised(q_g: np.ndarray) -> np.ndarray:
    """q_g with each row divided by its L2 norm (a zero row stays zero), float32; row by row, so any rows of it."""
    q_g = q_g.astype(np.float32, copy=False)
    norms = np.linalg.norm(q_g, axis=1, keepdims=True)
    norms[norms == 0] = 1
    return q_g / norms


def _query_sets(q_nbrs: np.ndarray, a_nbrs: np.ndarray, k1: int) -> sp.csr_matrix:
    """Rq of §2: gallery images g among the first k1 of NQ[i] with query i among NA[g]."""
    nq, ng = len(q_nbrs), len(a_nbrs)
    first = q_nbrs[:, :k1]
    back = a_nbrs[np.maximum(first - nq, 0)]
    mask = (first >= nq) & (back == np.arange(nq)[:, None, None]).any(axis=2)
    return _sets(first - nq, mask, ng)


def _others_first(g_nbrs: np.ndarray) -> np.ndarray:
    """NG with each image g itself moved to the end of its own list (stable otherwise)."""
    is_self = g_nbrs == np.arange(len(g_nbrs))[:, None]
    return np.take_along_axis(g_nbrs, np.argsort(is_self, axis=1, kind="stable"), axis=1)


def _hard_weight(src: Joint, k1: int, k2: int, lambda_value: float, expansion: float, search: Search) -> np.ndarray:
    """§2 on a source of D: binary vectors over the gallery, expanded with `>= expansion`.

    NQ holds max(k1, k2) neighbours and NG max(k1, k2 + 1), for the query expansion of step 5.
    """
    n, ng = src.n, src.n - src.nq
    q_nbrs, a_nbrs, g_nbrs, out = search.tables(src, min(n, max(k1, k2)), min(k1, n), min(ng, max(k1, k2 + 1)))

    def accept(overlap: np.ndarray, size: np.ndarray) -> np.ndarray:
        return overlap >= expansion * size

    itself = sp.identity(ng, dtype=np.int32, format="csr")
    half = _union(_reciprocal_sets(g_nbrs[:, :k1 // 2], ng, without_self=True), itself)
    vg = _union(_expand(_reciprocal_sets(g_nbrs[:, :k1], ng, without_self=True), half, accept), itself)
    vq = _expand(_query_sets(q_nbrs, a_nbrs, k1), half, accept)
    vq = _query_expansion(sp.vstack([vq, vg], format="csr").astype(np.float64), q_nbrs[:, :k2])
    vg = vg.astype(np.float64)
    if ng > 1:
        vg = _query_expansion(vg, _others_first(g_nbrs)[:, :min(k2, ng - 1)])
    return _blend(out, vq, vg, lambda_value, _row_sums(vq), _row_sums(vg), original=_row_normalised)


@checked
def hard_weight(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: PositiveInt = 20, k2: PositiveInt = 6,
                lambda_value: Probability = 0.3, expansion: Probability = 2 / 3,
                device: Device | None = None) -> np.ndarray:
    """Hard-weight k-reciprocal re-ranking (§2): float32 (nq, ng), independent of image order.

    Permuting the images permutes the output and nothing else, except where distances tie
    exactly (ties go to the lower index). The sets Rg[g] and Rh[g] always contain g itself,
    whatever the ties among duplicates; with k2 > k1 the query expansion uses the k2 nearest;
    with a one-image gallery there is no other image to expand with, so Vg' = Vg. With
    `device`, the blocks are copied there and ranked in torch; the rest runs here.
    """
    src = _matrices(q_g, q_q, g_g)
    return _hard_weight(src, k1, k2, lambda_value, expansion, _search(device))


# ---------------------------------------------------------------- §3 from features

@checked
def rerank_features(qf: np.ndarray, gf: np.ndarray, method: Method = "k_reciprocal", k1: PositiveInt = 20,
                    k2: PositiveInt = 6, lambda_value: Probability = 0.3, expansion: Probability = 2 / 3,
                    rows: PositiveInt | None = None, device: Device | None = None) -> np.ndarray:
    """Re-rank from features (§3): equal to `k_reciprocal` / `hard_weight` of the squared
    Euclidean distances of the same features, without ever holding an N x N matrix.

    `rows` sets how many rows of the joint distance matrix are computed at a time. With
    `device` ("cpu", "cuda", a torch.device) the features are copied there, and the distance
    blocks and neighbour lists are computed in torch (reid/rerank_torch.py); None computes them
    with NumPy. The sets, weights and Jaccard distances are the same SciPy code either way.
    """
    qf = finite_matrix(qf, "query features")
    gf = finite_matrix(gf, "gallery features", (None, qf.shape[1]), sizes="the query features: feature sizes differ")
    if len(qf) == 0 or len(gf) == 0:
        raise ReidError(f"need at least one query and one gallery image, got {len(qf)} and {len(gf)}")
    search = _search(device)
    src = JointFeatures(np.concatenate([qf, gf]), len(qf), rows)
    if method == "k_reciprocal":
        return _k_reciprocal(src, k1, k2, lambda_value, search)
    return _hard_weight(src, k1, k2, lambda_value, expansion, search)


# The matrices `distance_matrices` returns, by file stem, with the name a table gives each.
KINDS = {"dist": "plain", "dist_kr": "k-reciprocal", "dist_hw": "hard-weight"}


@checked
def distance_matrices(qf: np.ndarray, gf: np.ndarray, k1: PositiveInt = 20, k2: PositiveInt = 6,
                      lambda_value: Probability = 0.3, rerank_input: RerankInput = "squared",
                      device: Device | None = None) -> dict[str, np.ndarray]:
    """The plain squared Euclidean matrix (`dist`) and both re-rankings of it (`dist_kr`, `dist_hw`).

    `rerank_input="squared"` feeds squared Euclidean distances to the re-rankings (the winning
    entry), through the memory-bounded feature path; `"euclidean"` feeds Euclidean ones (what
    the k-reciprocal port, which squares its input, was written for) through the matrix path.
    `device` is where the re-rankings' neighbour search runs (None: with NumPy).
    """
    plain = sq_euclidean(qf, gf)
    params = dict(k1=k1, k2=k2, lambda_value=lambda_value, device=device)
    if rerank_input == "squared":
        return {"dist": plain,
                "dist_kr": rerank_features(qf, gf, method="k_reciprocal", **params),
                "dist_hw": rerank_features(qf, gf, method="hard_weight", **params)}
    q_g, q_q, g_g = (np.sqrt(m) for m in (plain, sq_euclidean(qf, qf), sq_euclidean(gf, gf)))
    return {"dist": plain, "dist_kr": k_reciprocal(q_g, q_q, g_g, **params),
            "dist_hw": hard_weight(q_g, q_q, g_g, **params)}
