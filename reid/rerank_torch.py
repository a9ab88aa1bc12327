"""The re-rankings of reid/rerank.py (docs/RERANKING.md §1-§3) as torch operations on one device.

The same steps as the NumPy path, on a source of the joint matrix that lives on the device:

    neighbour lists -> k-reciprocal sets -> expansion -> local query expansion -> Jaccard -> blend

and the same numbers up to float32 rounding. Neighbours follow the same rule (the k smallest,
ties to the lower index), although torch.topk picks freely among equal values (see `smallest`).
Memory stays bounded: distances are computed a block of rows at a time and reduced to the k
nearest at once; sets are padded index tables (a row has at most a fixed number of members)
until they carry weights, then flat sparse rows; the Jaccard step fills the (queries x gallery)
output a chunk of rows at a time. Nothing N x N is held besides the inputs.

reid/rerank.py checks the inputs and the parameters and calls `k_reciprocal` / `hard_weight`
here with a source built by `features_source` or `matrices_source`.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor

from reid.distance import joint_lookups
from reid.errors import ReidError

# Per device type: entries per block of the joint matrix (1 GiB of float32 on CUDA), and entries
# per chunk of the sparse steps (the expansion's comparisons, query expansion, Jaccard triples).
_BLOCK = {"cuda": 1 << 28, "cpu": 1 << 24}
_WORK = {"cuda": 1 << 26, "cpu": 1 << 22}

Accept = Callable[[Tensor, Tensor], Tensor]


def as_device(device: str | torch.device) -> torch.device:
    """The device to re-rank on: cpu, or a CUDA device this machine has; else a ReidError naming it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ReidError(f"unknown device {device!r}: use cpu, cuda or cuda:<index>") from None
    if dev.type not in ("cpu", "cuda"):
        raise ReidError(f"device {device!r}: re-ranking runs on cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ReidError(f"device {device!r}: CUDA is not available here (torch {torch.__version__}); "
                        "use device='cpu' or device=None")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ReidError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """float32 matrix products in full precision: TF32 (if a caller enabled it) would change the neighbours."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


# ---------------------------------------------------------------- sources of the joint matrix

class Joint(Protocol):
    """The joint N x N matrix D on a device, as reid.rerank.Joint (a block of rows, or single entries)."""

    nq: int
    n: int
    block: int
    device: torch.device

    def transposed(self) -> Joint:
        """D.T as a source."""

    def rows(self, start: int, stop: int) -> Tensor:
        """Rows start..stop-1 (all queries or all gallery), a fresh tensor."""

    def entries(self, i: Tensor, j: Tensor) -> Tensor:
        """D[i, j] for index tensors."""


def _block_rows(n_cols: int, device: torch.device) -> int:
    """Rows per block of the joint matrix on `device`."""
    return max(1, _BLOCK[device.type] // max(n_cols, 1))


def _work(device: torch.device) -> int:
    """Entries per chunk of the sparse steps on `device`."""
    return _WORK[device.type]


class Features:
    """D as the squared Euclidean distances of x = [queries; gallery], by reid.distance's block formula."""

    def __init__(self, x: Tensor, nq: int, rows: int | None = None) -> None:
        self.x, self.sq = x, torch.einsum("ij,ij->i", x, x)
        self.nq, self.n, self.device = nq, len(x), x.device
        self.block = rows or _block_rows(self.n, x.device)

    def transposed(self) -> Features:
        """The distance is symmetric: D.T is D (up to the rounding of the matrix product)."""
        return self

    def rows(self, start: int, stop: int) -> Tensor:
        """|a|^2 + |b|^2 - 2 a.b, clipped at 0, in the order of operations of reid.distance."""
        out = self.x[start:stop] @ self.x.T
        out.mul_(-2).add_(self.sq[start:stop, None]).add_(self.sq[None, :])
        return out.clamp_(min=0)

    def entries(self, i: Tensor, j: Tensor) -> Tensor:
        """D[i, j] by the same formula, a chunk of pairs at a time."""
        chunk = max(1, _work(self.x.device) // self.x.shape[1])
        out = torch.empty(len(i), dtype=self.x.dtype, device=self.x.device)
        for s in range(0, len(i), chunk):
            r, c = i[s:s + chunk], j[s:s + chunk]
            d = torch.einsum("ij,ij->i", self.x[r], self.x[c]).mul_(-2).add_(self.sq[r]).add_(self.sq[c])
            out[s:s + chunk] = d.clamp_(min=0)
        return out


class Matrices:
    """D from its three blocks q_g, q_q, g_g on the device, in one dtype (transposing is free)."""

    def __init__(self, q_g: Tensor, q_q: Tensor, g_g: Tensor) -> None:
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.nq, self.n, self.device = len(q_q), len(q_q) + len(g_g), q_g.device
        self.block = _block_rows(self.n, q_g.device)

    def transposed(self) -> Matrices:
        """D.T = [[q_q.T, q_g], [q_g.T, g_g.T]]: the joint matrix of (q_g, q_q.T, g_g.T), nothing copied."""
        return Matrices(self.q_g, self.q_q.T, self.g_g.T)

    def rows(self, start: int, stop: int) -> Tensor:
        """[q_q | q_g] rows for queries, [q_g.T | g_g] rows for gallery images."""
        left, right = (self.q_q, self.q_g) if start < self.nq else (self.q_g.T, self.g_g)
        first = start if start < self.nq else start - self.nq
        last = first + stop - start
        return torch.cat([left[first:last], right[first:last]], dim=1)

    def entries(self, i: Tensor, j: Tensor) -> Tensor:
        """D[i, j], read from whichever block holds each pair."""
        out = torch.empty(len(i), dtype=self.q_g.dtype, device=self.q_g.device)
        for sel, values in joint_lookups(i, j, self.nq, self.q_q, self.q_g, self.g_g):
            out[sel] = values
        return out


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


def _scan(src: Joint) -> Iterator[tuple[int, int, Tensor]]:
    """(start, stop, rows) for every block of rows; none straddles nq."""
    for start in [*range(0, src.nq, src.block), *range(src.nq, src.n, src.block)]:
        stop = min(start + src.block, src.nq if start < src.nq else src.n)
        yield start, stop, src.rows(start, stop)


# ---------------------------------------------------------------- neighbour lists

def smallest(block: Tensor, k: int) -> Tensor:
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


# ---------------------------------------------------------------- sets: padded tables, then sparse rows

class Rows(NamedTuple):
    """A sparse matrix by rows: row i holds columns cols[ptr[i]:ptr[i + 1]] (ascending) with values vals."""

    ptr: Tensor
    cols: Tensor
    vals: Tensor
    n_cols: int

    @property
    def n_rows(self) -> int:
        return len(self.ptr) - 1


def _row_ids(ptr: Tensor) -> Tensor:
    """The row of every stored entry."""
    return torch.arange(len(ptr) - 1, device=ptr.device).repeat_interleave(ptr.diff())


def _gather_ranges(starts: Tensor, counts: Tensor) -> Tensor:
    """The positions starts[r], ..., starts[r] + counts[r] - 1 of every range r, one after the other."""
    ends = counts.cumsum(0)
    total = int(ends[-1]) if len(ends) else 0
    pos = torch.arange(total, device=counts.device)
    return pos + (starts - (ends - counts)).repeat_interleave(counts, output_size=total)


def _ptr(index: Tensor, n: int) -> Tensor:
    """Where the run of each value 0..n-1 starts once entries are sorted by `index` (a row or a column)."""
    return torch.cat([index.new_zeros(1), torch.bincount(index, minlength=n).cumsum(0)])


def _is_reciprocal(nbrs: Tensor) -> Tensor:
    """mask[i, m]: whether i is itself among the neighbours of its m-th neighbour nbrs[i, m]."""
    mask = torch.empty(nbrs.shape, dtype=torch.bool, device=nbrs.device)
    rows = max(1, _work(nbrs.device) // max(nbrs.shape[1] ** 2, 1))
    for s in range(0, len(nbrs), rows):
        part = nbrs[s:s + rows]
        own = torch.arange(s, s + len(part), device=nbrs.device)[:, None, None]
        mask[s:s + rows] = (nbrs[part] == own).any(dim=2)
    return mask


def _reciprocal(nbrs: Tensor, without_self: bool = False) -> Tensor:
    """The k-reciprocal neighbours of each row as a padded table (-1 where a neighbour is not one), optionally not i."""
    mask = _is_reciprocal(nbrs)
    if without_self:
        mask &= nbrs != torch.arange(len(nbrs), device=nbrs.device)[:, None]
    return torch.where(mask, nbrs, -1)


def _expand(base: Tensor, half: Tensor, accept: Accept) -> Tensor:
    """Each set base[i] with the half sets half[c] of its members that `accept(overlap, size)` lets in.

    Tables in, a table out (padded with -1, repeats kept: `_sets` removes them). overlap is
    |base[i] & half[c]|, counted against the sets before any expansion.
    """
    sizes = (half >= 0).sum(dim=1)
    wb, wh = base.shape[1], half.shape[1]
    rows = max(1, _work(base.device) // max(wb * wb * wh, 1))
    out = []
    for s in range(0, len(base), rows):
        b = base[s:s + rows]
        members = half[b.clamp(min=0)]
        inside = (members[..., None] == torch.where(b >= 0, b, -2)[:, None, None, :]).any(dim=3)
        taken = accept(inside.sum(dim=2), sizes[b.clamp(min=0)]) & (b >= 0)
        out.append(torch.cat([b, torch.where(taken[..., None], members, -1).flatten(1)], dim=1))
    return torch.cat(out)


def _sets(table: Tensor, n_cols: int) -> Rows:
    """The distinct members (>= 0) of each row of a padded table, ascending, with value 1."""
    t = torch.where(table >= 0, table, n_cols).sort(dim=1).values
    keep = t < n_cols
    keep[:, 1:] &= t[:, 1:] != t[:, :-1]
    ptr = torch.cat([t.new_zeros(1), keep.sum(dim=1).cumsum(0)])
    cols = t[keep]
    return Rows(ptr, cols, torch.ones(len(cols), dtype=torch.float64, device=t.device), n_cols)


def _slice(v: Rows, start: int, stop: int) -> Rows:
    """Rows start..stop-1 of v."""
    first, last = int(v.ptr[start]), int(v.ptr[stop])
    return Rows(v.ptr[start:stop + 1] - first, v.cols[first:last], v.vals[first:last], v.n_cols)


def _stack(a: Rows, b: Rows) -> Rows:
    """The rows of a, then those of b."""
    return Rows(torch.cat([a.ptr, b.ptr[1:] + a.ptr[-1]]), torch.cat([a.cols, b.cols]), torch.cat([a.vals, b.vals]),
                a.n_cols)


def _chunks(work: Tensor, cap: int, budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive row ranges of at most `cap` rows and about `budget` work each (a heavier row alone)."""
    done = np.concatenate([[0], np.cumsum(work.cpu().numpy())])
    bounds = np.searchsorted(done, np.arange(0, done[-1], budget), side="right") - 1
    bounds = np.unique(np.concatenate([bounds, np.arange(0, len(work), cap), [len(work)]]))
    yield from zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)


def _query_expansion(v: Rows, nbrs: Tensor) -> Rows:
    """Local query expansion: row r becomes the mean of the rows nbrs[r] of v (computed from v, not in place)."""
    m, k = nbrs.shape
    sizes = v.ptr.diff()
    parts = []
    for start, stop in _chunks(sizes[nbrs].sum(dim=1), m, _work(nbrs.device)):
        src = nbrs[start:stop].flatten()
        counts = sizes[src]
        pos = _gather_ranges(v.ptr[src], counts)
        rows = torch.arange(start, stop, device=nbrs.device).repeat_interleave(k).repeat_interleave(counts)
        keys, inverse = torch.unique(rows * v.n_cols + v.cols[pos], sorted=True, return_inverse=True)
        vals = torch.zeros(len(keys), dtype=v.vals.dtype, device=nbrs.device)
        parts.append((keys, vals.index_add_(0, inverse, v.vals[pos] * (1.0 / k))))
    keys, vals = (torch.cat(p) for p in zip(*parts, strict=True))
    return Rows(_ptr(keys // v.n_cols, m), keys % v.n_cols, vals, v.n_cols)


def _row_sums(v: Rows) -> Tensor:
    """The sum of every row."""
    return torch.zeros(v.n_rows, dtype=v.vals.dtype, device=v.vals.device).index_add_(0, _row_ids(v.ptr), v.vals)


# ---------------------------------------------------------------- Jaccard and blend

def _blend(out: Tensor, vq: Rows, vg: Rows, lambda_value: float, q_mass: Tensor, g_mass: Tensor) -> np.ndarray:
    """out = lambda * out + (1 - lambda) * the Jaccard distances of the rows of vq and vg, as a NumPy array.

    A chunk of query rows at a time: each entry (i, c) of vq meets column c of vg, one
    (i, c, g) triple per gallery row g that uses c, summed into a dense block of min-sums.
    """
    ng, device = vg.n_rows, out.device
    g_rows = _row_ids(vg.ptr)
    order = torch.sort(vg.cols, stable=True).indices
    c_rows, c_vals, c_ptr = g_rows[order], vg.vals[order], _ptr(vg.cols, vg.n_cols)
    per_entry = c_ptr[vq.cols + 1] - c_ptr[vq.cols]
    q_rows = _row_ids(vq.ptr)
    work = torch.zeros(vq.n_rows, dtype=torch.int64, device=device).index_add_(0, q_rows, per_entry)
    for start, stop in _chunks(work, max(1, _work(device) // ng), _work(device)):
        first, last = int(vq.ptr[start]), int(vq.ptr[stop])
        counts = per_entry[first:last]
        pos = _gather_ranges(c_ptr[vq.cols[first:last]], counts)
        mins = torch.minimum(vq.vals[first:last].repeat_interleave(counts), c_vals[pos])
        keys = (q_rows[first:last] - start).repeat_interleave(counts) * ng + c_rows[pos]
        sums = torch.zeros((stop - start) * ng, dtype=mins.dtype, device=device).index_add_(0, keys, mins)
        sums = sums.view(stop - start, ng)
        jaccard = 1 - sums / (q_mass[start:stop, None] + g_mass[None, :] - sums)
        out[start:stop] = (out[start:stop] * lambda_value).double() + (1 - lambda_value) * jaccard
    return out.cpu().numpy()


# ---------------------------------------------------------------- §1 k-reciprocal

def _squared(d: Tensor) -> Tensor:
    """d**2 as float32, rounded as the NumPy path rounds it (square in the input type, then cast)."""
    return d.square_() if d.dtype == torch.float32 else d.square().float()


def _ranked(src: Joint, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """§1 steps 1-2 on the rows of `src` squared: (k nearest of each row, row maxima, O[:nq, nq:])."""
    nq, n, device = src.nq, src.n, src.device
    rank = torch.empty((n, min(k, n)), dtype=torch.int64, device=device)
    top = torch.empty(n, dtype=torch.float32, device=device)
    o_qg = torch.empty((nq, n - nq), dtype=torch.float32, device=device)
    for start, stop, rows in _scan(src):
        rows = _squared(rows)
        t = rows.amax(dim=1)
        t[t == 0] = 1
        top[start:stop] = t
        rows /= t[:, None]
        rank[start:stop] = smallest(rows, k)
        if start < nq:
            o_qg[start:stop] = rows[:, nq:]
    return rank, top, o_qg


def _weights(sets: Rows, src: Joint, top: Tensor) -> Rows:
    """§1 step 5: exp(-O[i, j]) over each set, normalised to sum 1 per row (O = src squared / row maximum)."""
    rows = _row_ids(sets.ptr)
    w = torch.exp(-(_squared(src.entries(rows, sets.cols)) / top[rows])).double()
    w /= torch.zeros(sets.n_rows, dtype=w.dtype, device=w.device).index_add_(0, rows, w)[rows]
    return sets._replace(vals=w)


def _more_than_two_thirds(overlap: Tensor, size: Tensor) -> Tensor:
    """§1 step 4's test, in float64 as the NumPy path makes it."""
    return overlap > 2 / 3 * size.double()


def k_reciprocal(src: Joint, k1: int, k2: int, lambda_value: float) -> np.ndarray:
    """§1 on a source of D (O, the matrix ranked, is D.T squared and divided by its row maxima)."""
    with full_precision(), torch.no_grad():
        src = src.transposed()
        rank, top, out = _ranked(src, max(k1 + 1, k2))
        half = round(k1 / 2)  # half to even, as numpy's around
        sets = _sets(_expand(_reciprocal(rank[:, :k1 + 1]), _reciprocal(rank[:, :half + 1]), _more_than_two_thirds),
                     src.n)
        v = _weights(sets, src, top)
        if k2 != 1:
            v = _query_expansion(v, rank[:, :k2])
        ones = torch.ones(src.n, dtype=torch.float64, device=out.device)
        return _blend(out, _slice(v, 0, src.nq), _slice(v, src.nq, src.n), lambda_value, ones[:src.nq],
                      ones[src.nq:])


# ---------------------------------------------------------------- §2 hard weight

def _row_normalised(q_g: Tensor) -> Tensor:
    """q_g with each row divided by its L2 norm (a zero row stays zero), float32."""
    q_g = q_g.float()
    norms = torch.linalg.vector_norm(q_g, dim=1, keepdim=True)
    norms[norms == 0] = 1
    return q_g / norms


def _neighbour_tables(src: Joint, k1: int, k2: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """§2 step 1 in one pass: NQ (joint indices), NA (joint), NG (gallery indices), and rownorm(q_g)."""
    nq, n = src.nq, src.n
    ng = n - nq
    k_query, k_all, k_gallery = min(n, max(k1, k2)), min(k1, n), min(ng, max(k1, k2 + 1))
    device = src.device
    q_nbrs = torch.empty((nq, k_query), dtype=torch.int64, device=device)
    a_nbrs = torch.empty((ng, k_all), dtype=torch.int64, device=device)
    g_nbrs = torch.empty((ng, k_gallery), dtype=torch.int64, device=device)
    out = torch.empty((nq, ng), dtype=torch.float32, device=device)
    for start, stop, rows in _scan(src):
        if start < nq:
            q_nbrs[start:stop] = smallest(rows, k_query)
            out[start:stop] = _row_normalised(rows[:, nq:])
        else:
            a_nbrs[start - nq:stop - nq] = smallest(rows, k_all)
            g_nbrs[start - nq:stop - nq] = smallest(rows[:, nq:], k_gallery)
    return q_nbrs, a_nbrs, g_nbrs, out


def _query_sets(q_nbrs: Tensor, a_nbrs: Tensor, k1: int) -> Tensor:
    """Rq of §2 as a table of gallery indices: g among the first k1 of NQ[i] with query i among NA[g]."""
    nq = len(q_nbrs)
    first = q_nbrs[:, :k1]
    back = a_nbrs[(first - nq).clamp(min=0)]
    own = torch.arange(nq, device=first.device)[:, None, None]
    return torch.where((first >= nq) & (back == own).any(dim=2), first - nq, -1)


def _others_first(g_nbrs: Tensor) -> Tensor:
    """NG with each image g itself moved to the end of its own list (stable otherwise)."""
    is_self = (g_nbrs == torch.arange(len(g_nbrs), device=g_nbrs.device)[:, None]).to(torch.uint8)
    return g_nbrs.gather(1, torch.sort(is_self, dim=1, stable=True).indices)


def hard_weight(src: Joint, k1: int, k2: int, lambda_value: float, expansion: float) -> np.ndarray:
    """§2 on a source of D: binary vectors over the gallery, expanded with `>= expansion`."""
    def accept(overlap: Tensor, size: Tensor) -> Tensor:
        return overlap >= expansion * size.double()

    with full_precision(), torch.no_grad():
        ng = src.n - src.nq
        q_nbrs, a_nbrs, g_nbrs, out = _neighbour_tables(src, k1, k2)
        itself = torch.arange(ng, device=out.device)[:, None]
        half = torch.cat([_reciprocal(g_nbrs[:, :k1 // 2], without_self=True), itself], dim=1)
        vg = _sets(torch.cat([_expand(_reciprocal(g_nbrs[:, :k1], without_self=True), half, accept), itself], dim=1),
                   ng)
        vq = _sets(_expand(_query_sets(q_nbrs, a_nbrs, k1), half, accept), ng)
        vq = _query_expansion(_stack(vq, vg), q_nbrs[:, :k2])
        if ng > 1:
            vg = _query_expansion(vg, _others_first(g_nbrs)[:, :min(k2, ng - 1)])
        return _blend(out, vq, vg, lambda_value, _row_sums(vq), _row_sums(vg))
