"""k-reciprocal re-ranking, original and hard-weight (RERANKING.md §1-§3), exact and memory-bounded.

Both methods depend on the distances only through each image's nearest neighbours, the
distances to a few of them, and the query x gallery block. So the joint N x N matrix is read
(or, from features, computed) one block of rows at a time, reduced to neighbour lists, and
everything after that works on sparse sets: nothing N x N is ever held besides the inputs.

Neighbours are the k smallest distances with ties broken by the lower index (a stable sort).
The public port uses numpy's unstable argsort, so where two distances are exactly equal its
choice is unspecified; everywhere else both pick the same neighbours.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch

from reid.distance import as_features, block_rows, sq_euclidean, sq_euclidean_block, sq_norms
from reid.errors import ReidError

_TRIPLES = 1 << 23  # (query, shared column, gallery) triples per chunk of the Jaccard step
_BLOCK = 1 << 22  # entries per block of rows read from distance matrices (16 MiB of float32)
_FEATURE_BLOCK = 1 << 26  # entries per block of distances computed from features (256 MiB)
_WORKERS = 2  # blocks processed at once: numpy copies, BLAS and torch's top-k release the GIL


def _for_blocks(fn: Callable[[int, int], None], n: int, step: int) -> None:
    """Call fn(start, stop) for consecutive blocks of n rows, _WORKERS blocks at a time."""
    with ThreadPoolExecutor(_WORKERS) as pool:
        list(pool.map(lambda start: fn(start, min(start + step, n)), range(0, n, step)))


# ---------------------------------------------------------------- neighbour lists

def smallest(block: np.ndarray, k: int, scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Columns and values of the k smallest entries of every row, ordered by (value, column).

    With `scale`, the values ranked are block / scale[:, None] as float division rounds them,
    computed for the candidates only. torch's top-k picks k + 1 candidates fast; a row whose
    k-th and (k + 1)-th values tie is redone exactly, so the result never depends on how
    top-k breaks ties.
    """
    n, m = block.shape
    k = min(k, m)
    vals, idx = torch.topk(torch.from_numpy(np.ascontiguousarray(block)), min(k + 1, m), dim=1,
                           largest=False)
    vals, idx = vals.numpy(), idx.numpy()
    if scale is not None:
        vals = vals / scale[:, None]
    tied = np.flatnonzero(vals[:, k - 1] == vals[:, k]) if k < m else np.zeros(0, dtype=np.int64)
    idx, vals = merge_smallest(idx[:, :k], vals[:, :k], k)
    if tied.size:
        rows = block[tied] if scale is None else block[tied] / scale[tied, None]
        idx[tied], vals[tied] = _smallest_exact(rows, vals[tied, k - 1], k)
    return idx, vals


def _smallest_exact(block: np.ndarray, kth: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`smallest` for rows whose k-th value is tied: every candidate sorted by (value, column)."""
    r, c = np.nonzero(block <= kth[:, None])
    v = block[r, c]
    order = np.lexsort((c, v, r))
    r, c, v = r[order], c[order], v[order]
    keep = np.arange(len(r)) - np.searchsorted(r, r) < k
    return c[keep].reshape(-1, k), v[keep].reshape(-1, k)


def merge_smallest(idx: np.ndarray, vals: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest of per-row candidate lists (distinct columns), ordered by (value, column)."""
    order = np.lexsort((idx, vals), axis=1)[:, :k]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)


def reciprocal(nbrs: np.ndarray, rows: int = 1 << 13) -> np.ndarray:
    """mask[i, m]: whether i is itself among the neighbours of its m-th neighbour nbrs[i, m]."""
    mask = np.empty(nbrs.shape, dtype=bool)
    for start in range(0, len(nbrs), rows):
        part = nbrs[start:start + rows]
        own = np.arange(start, start + len(part))[:, None, None]
        mask[start:start + rows] = (nbrs[part] == own).any(axis=2)
    return mask


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Membership of `keys` in a sorted key array."""
    pos = np.minimum(np.searchsorted(sorted_keys, keys), max(len(sorted_keys) - 1, 0))
    return sorted_keys[pos] == keys if len(sorted_keys) else np.zeros(keys.shape, dtype=bool)


def _pairs(mask: np.ndarray, nbrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, neighbour) pairs selected by a mask over a neighbour table."""
    rows, pos = np.nonzero(mask)
    return rows, nbrs[rows, pos]


def _expand(set_rows: np.ndarray, set_cols: np.ndarray, n_cols: int, half: np.ndarray,
            half_mask: np.ndarray, accept: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Sorted keys row * n_cols + col of every set united with the half sets it accepts.

    For each pair (row, c) of a set, the half set of c is half[c][half_mask[c]];
    `accept(overlap, size)` decides whether it joins, where overlap counts its members that
    are already in the row's set before any expansion.
    """
    keys = np.sort(set_rows * n_cols + set_cols)
    members, valid = half[set_cols], half_mask[set_cols]
    inside = np.zeros(valid.shape, dtype=bool)
    inside[valid] = _contains(keys, (set_rows[:, None] * n_cols + members)[valid])
    ok = accept(inside.sum(axis=1), valid.sum(axis=1))
    extra = (set_rows[ok, None] * n_cols + members[ok])[valid[ok]]
    return np.unique(np.concatenate([keys, extra]))


def _csr(keys: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """A CSR matrix from sorted keys row * n_cols + col (unique, so no summing happens)."""
    rows, cols = np.divmod(keys, shape[1])
    indptr = np.searchsorted(rows, np.arange(shape[0] + 1))
    return sp.csr_matrix((values, cols, indptr), shape=shape)


def _mean_rows(nbrs: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """The averaging operator: row i holds 1/k at each of its k neighbours."""
    n, k = nbrs.shape
    data = np.full(n * k, 1.0 / k)
    return sp.csr_matrix((data, nbrs.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n_cols))


# ---------------------------------------------------------------- Jaccard step

def _min_sums(a: sp.csr_matrix, b: sp.csc_matrix) -> np.ndarray:
    """Dense (a.rows, b.rows) of sum_c min(a[i, c], b[j, c]) over the columns c both use.

    Each non-zero a[i, c] meets the non-zeros of column c of b: one (i, c, j) triple each,
    expanded with repeat/arange and summed into the dense block with one bincount.
    """
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    counts = np.diff(b.indptr)[a.indices]
    entry = np.repeat(np.arange(len(a.indices)), counts)
    pos = np.arange(counts.sum()) + np.repeat(b.indptr[a.indices] - (np.cumsum(counts) - counts), counts)
    vals = np.minimum(a.data[entry], b.data[pos])
    n_b = b.shape[0]
    keys = rows[entry] * n_b + b.indices[pos]
    return np.bincount(keys, weights=vals, minlength=a.shape[0] * n_b).reshape(a.shape[0], n_b)


def jaccard_blocks(vq: sp.csr_matrix, vg: sp.csr_matrix) -> Iterator[tuple[slice, np.ndarray]]:
    """(query rows, min-sum block against every gallery row), in chunks of bounded work."""
    b = vg.tocsc()
    row_of_entry = np.repeat(np.arange(vq.shape[0]), np.diff(vq.indptr))
    work = np.bincount(row_of_entry, weights=np.diff(b.indptr)[vq.indices], minlength=vq.shape[0])
    done = np.concatenate([[0], np.cumsum(work)])
    bounds = np.searchsorted(done, np.arange(0, done[-1], _TRIPLES), side="right") - 1
    cap = block_rows(vg.shape[0])
    bounds = np.unique(np.concatenate([bounds, np.arange(0, vq.shape[0], cap), [vq.shape[0]]]))
    for start, stop in zip(bounds[:-1], bounds[1:]):
        yield slice(start, stop), _min_sums(vq[start:stop], b)


def _blend(out: np.ndarray, vq: sp.csr_matrix, vg: sp.csr_matrix, lambda_value: float,
           jaccard: Callable[[np.ndarray, slice], np.ndarray]) -> np.ndarray:
    """out = lambda * out + (1 - lambda) * jaccard, one chunk of queries at a time."""
    for rows, mins in jaccard_blocks(vq, vg):
        out[rows] = lambda_value * out[rows] + (1 - lambda_value) * jaccard(mins, rows)
    return out


# ---------------------------------------------------------------- §1 k-reciprocal

def _squared(d: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """d**2 as float32, rounded as the port rounds it (square in the input type, then cast)."""
    return np.square(d, out=out).astype(np.float32, copy=False)


def _row_max(o: np.ndarray) -> np.ndarray:
    """The maximum of each row, 1 for an all-zero row (which then stays zero when divided)."""
    top = o.max(axis=1)
    top[top == 0] = 1
    return top


def _k_reciprocal_core(rank: np.ndarray, o_pairs: Callable[[np.ndarray, np.ndarray], np.ndarray],
                       out: np.ndarray, k1: int, k2: int, lambda_value: float) -> np.ndarray:
    """Steps 3-6 of §1 from the sorted neighbour table `rank`; `out` holds O[:nq, nq:] on entry."""
    n = len(rank)
    nq = out.shape[0]
    forward = rank[:, :min(k1 + 1, n)]
    half = rank[:, :min(int(np.around(k1 / 2)) + 1, n)]
    rows, cols = _pairs(reciprocal(forward), forward)
    keys = _expand(rows, cols, n, half, reciprocal(half), lambda overlap, size: overlap > 2 / 3 * size)
    rows, cols = np.divmod(keys, n)
    weight = np.exp(-o_pairs(rows, cols)).astype(np.float64)
    v = _csr(keys, weight / np.bincount(rows, weights=weight, minlength=n)[rows], (n, n))
    if k2 != 1:
        v = (_mean_rows(rank[:, :min(k2, n)], n) @ v).tocsr()
    return _blend(out, v[:nq], v[nq:], lambda_value, lambda m, _: 1 - m / (2 - m))


def _check_params(k1: int, k2: int) -> None:
    """Neighbour counts below one leave empty sets and undefined means."""
    if k1 < 1 or k2 < 1:
        raise ReidError(f"k1 and k2 must be at least 1 (got k1={k1}, k2={k2})")


def _check_matrices(q_g: np.ndarray, q_q: np.ndarray,
                    g_g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real-valued, finite, consistently shaped distance blocks (integers become float64)."""
    mats = []
    for name, m in (("q_g", q_g), ("q_q", q_q), ("g_g", g_g)):
        m = np.asarray(m)
        if not np.issubdtype(m.dtype, np.floating):
            m = m.astype(np.float64)
        if m.ndim != 2 or not np.isfinite(m).all():
            raise ReidError(f"{name}: expected a finite 2-D distance matrix, got shape {m.shape}"
                            + ("" if m.ndim != 2 else " with NaN or inf"))
        mats.append(m)
    q_g, q_q, g_g = mats
    nq, ng = q_g.shape
    if q_q.shape != (nq, nq) or g_g.shape != (ng, ng):
        raise ReidError(f"distance shapes disagree: q_g {q_g.shape}, q_q {q_q.shape}, g_g {g_g.shape}")
    if nq == 0 or ng == 0:
        raise ReidError(f"need at least one query and one gallery image, got q_g {q_g.shape}")
    return q_g, q_q, g_g


def _transposed_square(src: np.ndarray, out: np.ndarray, step: int = 256) -> None:
    """out[:] = src.T ** 2, in row strips (a plain strided copy of a transpose is cache-bound)."""
    for s in range(0, src.shape[0], step):
        np.square(src[s:s + step].T, out=out[:, s:s + step])


def _squared_columns(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Columns start..stop-1 of D = [[q_q, q_g], [q_g.T, g_g]], squared and returned as float32 rows."""
    nq = len(q_q)
    out = np.empty((stop - start, nq + len(g_g)), dtype=np.float32)
    a, b = min(start, nq), min(stop, nq)
    if b > a:
        _transposed_square(q_q[:, a:b], out[:b - a, :nq])
        np.square(q_g[a:b], out=out[:b - a, nq:])
    a, b = max(start, nq) - nq, max(stop, nq) - nq
    if b > a:
        _transposed_square(q_g[:, a:b], out[-(b - a):, :nq])
        _transposed_square(g_g[:, a:b], out[-(b - a):, nq:])
    return out


def _joint_entries(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """D[r, c] for index arrays into the joint space."""
    nq = len(q_q)
    out = np.empty(len(r), dtype=np.result_type(q_g, q_q, g_g))
    for rq, cq in ((True, True), (True, False), (False, True), (False, False)):
        sel = ((r < nq) == rq) & ((c < nq) == cq)
        rr, cc = r[sel], c[sel]
        if rq and cq:
            out[sel] = q_q[rr, cc]
        elif rq:
            out[sel] = q_g[rr, cc - nq]
        elif cq:
            out[sel] = q_g[cc, rr - nq]
        else:
            out[sel] = g_g[rr - nq, cc - nq]
    return out


def k_reciprocal(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int = 20, k2: int = 6,
                 lambda_value: float = 0.3) -> np.ndarray:
    """k-reciprocal re-ranking of three distance blocks (§1): float32 (nq, ng).

    The same numbers as the public port, up to float32 rounding of sums, without its five
    dense N x N arrays: the joint matrix is squared, normalised and ranked a block of rows at a
    time, and only each row's k1 + 1 nearest neighbours are kept.
    """
    _check_params(k1, k2)
    q_g, q_q, g_g = _check_matrices(q_g, q_q, g_g)
    nq, ng = q_g.shape
    n = nq + ng
    k = min(n, max(k1 + 1, k2))
    rank = np.empty((n, k), dtype=np.int64)
    top = np.empty(n, dtype=np.float32)

    def rank_rows(start: int, stop: int) -> None:
        p = _squared_columns(q_g, q_q, g_g, start, stop)
        top[start:stop] = _row_max(p)
        rank[start:stop] = smallest(p, k, scale=top[start:stop])[0]

    _for_blocks(rank_rows, n, block_rows(n, _BLOCK))
    out = _squared(q_g)
    out /= top[:nq, None]

    def o_pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return _squared(_joint_entries(q_g, q_q, g_g, j, i)) / top[i]

    return _k_reciprocal_core(rank, o_pairs, out, k1, k2, lambda_value)


# ---------------------------------------------------------------- §2 hard weight

def _query_neighbours(to_queries: np.ndarray, to_gallery: np.ndarray, k: int) -> np.ndarray:
    """The k nearest of each query among all N images, from its two blocks of distances."""
    nq = to_queries.shape[1]
    iq, vq = smallest(to_queries, k)
    ig, vg = smallest(to_gallery, k)
    return merge_smallest(np.concatenate([iq, ig + nq], axis=1), np.concatenate([vq, vg], axis=1), k)[0]


def _gallery_neighbours(to_queries: np.ndarray, to_gallery: np.ndarray, k_all: int,
                        k_gallery: int) -> tuple[np.ndarray, np.ndarray]:
    """(k_all nearest among all N, joint indices; k_gallery nearest in the gallery, gallery indices)."""
    nq = to_queries.shape[1]
    ig, vg = smallest(to_gallery, k_gallery)
    iq, vq = smallest(to_queries, k_all)
    both = merge_smallest(np.concatenate([iq, ig[:, :k_all] + nq], axis=1),
                          np.concatenate([vq, vg[:, :k_all]], axis=1), k_all)[0]
    return both, ig


def _with_self(nbrs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Table and mask of the sets {g} + reciprocal(first k of nbrs[g]) \\ {g}, over the gallery."""
    first = nbrs[:, :k]
    own = np.arange(len(nbrs))[:, None]
    table = np.concatenate([own, first], axis=1)
    mask = np.concatenate([np.ones_like(own, dtype=bool), reciprocal(first) & (first != own)], axis=1)
    return table, mask


def _hard_weight_core(q_nbrs: np.ndarray, a_nbrs: np.ndarray, g_nbrs: np.ndarray, out: np.ndarray,
                      k1: int, k2: int, lambda_value: float, expansion: float) -> np.ndarray:
    """Steps 2-7 of §2 from the neighbour tables; `out` holds rownorm(q_g) on entry.

    q_nbrs: nearest of each query among all N (joint indices); a_nbrs: k1 nearest of each
    gallery image among all N (joint); g_nbrs: nearest of each gallery image in the gallery.
    """
    nq, ng = out.shape
    n = nq + ng

    def accept(overlap: np.ndarray, size: np.ndarray) -> np.ndarray:
        return overlap >= expansion * size

    half, half_mask = _with_self(g_nbrs, k1 // 2)
    full, full_mask = _with_self(g_nbrs, k1)
    others_mask = full_mask.copy()
    others_mask[:, 0] = False
    g_keys = _expand(*_pairs(others_mask, full), ng, half, half_mask, accept)
    g_keys = np.union1d(g_keys, np.arange(ng) * (ng + 1))
    first = q_nbrs[:, :min(k1, n)]
    back = a_nbrs[np.maximum(first - nq, 0)]
    in_q = (first >= nq) & (back == np.arange(nq)[:, None, None]).any(axis=2)
    q_rows, q_cols = _pairs(in_q, first)
    q_keys = _expand(q_rows, q_cols - nq, ng, half, half_mask, accept)
    vq = _csr(q_keys, np.ones(len(q_keys)), (nq, ng))
    vg = _csr(g_keys, np.ones(len(g_keys)), (ng, ng))
    vq2 = (_mean_rows(q_nbrs[:, :min(k2, n)], n) @ sp.vstack([vq, vg], format="csr")).tocsr()
    if ng > 1:
        is_self = g_nbrs == np.arange(ng)[:, None]
        others = np.take_along_axis(g_nbrs, np.argsort(is_self, axis=1, kind="stable"), axis=1)
        vg = (_mean_rows(others[:, :min(k2, ng - 1)], ng) @ vg).tocsr()
    q_mass = np.asarray(vq2.sum(axis=1)).ravel()
    g_mass = np.asarray(vg.sum(axis=1)).ravel()
    return _blend(out, vq2, vg, lambda_value,
                  lambda m, rows: 1 - m / (q_mass[rows, None] + g_mass[None, :] - m))


def _row_normalised(q_g: np.ndarray) -> np.ndarray:
    """q_g with each row divided by its L2 norm (a zero row stays zero), float32."""
    q_g = q_g.astype(np.float32, copy=False)
    norms = np.linalg.norm(q_g, axis=1, keepdims=True)
    norms[norms == 0] = 1
    return q_g / norms


def hard_weight(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int = 20, k2: int = 6,
                lambda_value: float = 0.3, expansion: float = 2 / 3) -> np.ndarray:
    """Hard-weight k-reciprocal re-ranking (§2): float32 (nq, ng), independent of image order.

    Permuting the images permutes the output and nothing else, except where distances tie
    exactly (ties go to the lower index). The sets Rg[g] and Rh[g] always contain g itself,
    whatever the ties among duplicates; with k2 > k1 the query expansion uses the k2 nearest;
    with a one-image gallery there is no other image to expand with, so Vg' = Vg.
    """
    _check_params(k1, k2)
    q_g, q_q, g_g = _check_matrices(q_g, q_q, g_g)
    nq, ng = q_g.shape
    n = nq + ng
    k_query, k_all, k_gallery = min(n, max(k1, k2)), min(k1, n), min(ng, max(k1, k2 + 1))
    q_nbrs = np.empty((nq, k_query), dtype=np.int64)
    a_nbrs = np.empty((ng, k_all), dtype=np.int64)
    g_nbrs = np.empty((ng, k_gallery), dtype=np.int64)

    def query_rows(start: int, stop: int) -> None:
        q_nbrs[start:stop] = _query_neighbours(q_q[start:stop], q_g[start:stop], k_query)

    def gallery_rows(start: int, stop: int) -> None:
        to_queries = np.ascontiguousarray(q_g[:, start:stop].T)
        a_nbrs[start:stop], g_nbrs[start:stop] = _gallery_neighbours(to_queries, g_g[start:stop], k_all, k_gallery)

    _for_blocks(query_rows, nq, block_rows(n, _BLOCK))
    _for_blocks(gallery_rows, ng, block_rows(n, _BLOCK))
    return _hard_weight_core(q_nbrs, a_nbrs, g_nbrs, _row_normalised(q_g), k1, k2, lambda_value, expansion)


# ---------------------------------------------------------------- §3 from features

def _pair_distances(x: np.ndarray, x_sq: np.ndarray, r: np.ndarray, c: np.ndarray,
                    chunk: int = 1 << 16) -> np.ndarray:
    """Squared Euclidean D[r, c] for index pairs, by the same formula as the blocks."""
    out = np.empty(len(r), dtype=np.float32)
    for s in range(0, len(r), chunk):
        rr, cc = r[s:s + chunk], c[s:s + chunk]
        d = np.einsum("ij,ij->i", x[rr], x[cc])
        d *= -2
        d += x_sq[rr]
        d += x_sq[cc]
        out[s:s + chunk] = np.maximum(d, 0)
    return out


def _k_reciprocal_features(x: np.ndarray, nq: int, k1: int, k2: int, lambda_value: float,
                           rows: int | None) -> np.ndarray:
    """§1 on the squared Euclidean distances of x = [queries; gallery], a block of rows at a time."""
    n = len(x)
    x_sq = sq_norms(x)
    k = min(n, max(k1 + 1, k2))
    rank = np.empty((n, k), dtype=np.int64)
    top = np.empty(n, dtype=np.float32)
    out = np.empty((nq, n - nq), dtype=np.float32)

    def rank_rows(start: int, stop: int) -> None:
        d = sq_euclidean_block(x[start:stop], x, x_sq[start:stop], x_sq)
        p = _squared(d, out=d)
        top[start:stop] = _row_max(p)
        rank[start:stop] = smallest(p, k, scale=top[start:stop])[0]
        q = max(0, min(stop, nq) - start)
        out[start:start + q] = p[:q, nq:] / top[start:start + q, None]

    _for_blocks(rank_rows, n, rows or block_rows(n, _FEATURE_BLOCK))

    def o_pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return _squared(_pair_distances(x, x_sq, j, i)) / top[i]

    return _k_reciprocal_core(rank, o_pairs, out, k1, k2, lambda_value)


def _hard_weight_features(x: np.ndarray, nq: int, k1: int, k2: int, lambda_value: float,
                          expansion: float, rows: int | None) -> np.ndarray:
    """§2 on the squared Euclidean distances of x = [queries; gallery], a block of rows at a time."""
    n = len(x)
    ng = n - nq
    x_sq = sq_norms(x)
    k_query, k_all, k_gallery = min(n, max(k1, k2)), min(k1, n), min(ng, max(k1, k2 + 1))
    q_nbrs = np.empty((nq, k_query), dtype=np.int64)
    a_nbrs = np.empty((ng, k_all), dtype=np.int64)
    g_nbrs = np.empty((ng, k_gallery), dtype=np.int64)
    out = np.empty((nq, ng), dtype=np.float32)

    def neighbour_rows(start: int, stop: int) -> None:
        to_queries = sq_euclidean_block(x[start:stop], x[:nq], x_sq[start:stop], x_sq[:nq])
        to_gallery = sq_euclidean_block(x[start:stop], x[nq:], x_sq[start:stop], x_sq[nq:])
        q = max(0, min(stop, nq) - start)
        if q:
            q_nbrs[start:start + q] = _query_neighbours(to_queries[:q], to_gallery[:q], k_query)
            out[start:start + q] = _row_normalised(to_gallery[:q])
        if start + q < stop:
            g = slice(start + q - nq, stop - nq)
            a_nbrs[g], g_nbrs[g] = _gallery_neighbours(to_queries[q:], to_gallery[q:], k_all, k_gallery)

    _for_blocks(neighbour_rows, n, rows or block_rows(n, _FEATURE_BLOCK))
    return _hard_weight_core(q_nbrs, a_nbrs, g_nbrs, out, k1, k2, lambda_value, expansion)


def rerank_features(qf: np.ndarray, gf: np.ndarray, method: str = "k_reciprocal", k1: int = 20,
                    k2: int = 6, lambda_value: float = 0.3, expansion: float = 2 / 3,
                    rows: int | None = None) -> np.ndarray:
    """Re-rank from features (§3): equal to `k_reciprocal` / `hard_weight` of the squared
    Euclidean distances of the same features, without ever holding an N x N matrix.

    `rows` sets how many rows of the joint distance matrix are computed at a time.
    """
    _check_params(k1, k2)
    qf, gf = as_features(qf, "query features"), as_features(gf, "gallery features")
    if qf.shape[1] != gf.shape[1]:
        raise ReidError(f"feature sizes differ: {qf.shape[1]} (queries) and {gf.shape[1]} (gallery)")
    if len(qf) == 0 or len(gf) == 0:
        raise ReidError(f"need at least one query and one gallery image, got {len(qf)} and {len(gf)}")
    x = np.concatenate([qf, gf])
    if method == "k_reciprocal":
        return _k_reciprocal_features(x, len(qf), k1, k2, lambda_value, rows)
    if method == "hard_weight":
        return _hard_weight_features(x, len(qf), k1, k2, lambda_value, expansion, rows)
    raise ReidError(f"unknown re-ranking method {method!r}: use k_reciprocal or hard_weight")


def distance_matrices(qf: np.ndarray, gf: np.ndarray, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                      rerank_input: str = "squared") -> dict[str, np.ndarray]:
    """The plain squared Euclidean matrix (`dist`) and both re-rankings of it (`dist_kr`, `dist_hw`).

    `rerank_input="squared"` feeds squared Euclidean distances to the re-rankings (the winning
    entry), through the memory-bounded feature path; `"euclidean"` feeds Euclidean ones (what
    the k-reciprocal port, which squares its input, was written for) through the matrix path.
    """
    plain = sq_euclidean(qf, gf)
    params = dict(k1=k1, k2=k2, lambda_value=lambda_value)
    if rerank_input == "squared":
        return {"dist": plain,
                "dist_kr": rerank_features(qf, gf, method="k_reciprocal", **params),
                "dist_hw": rerank_features(qf, gf, method="hard_weight", **params)}
    if rerank_input != "euclidean":
        raise ReidError(f"rerank_input={rerank_input!r}: use squared or euclidean")
    q_g, q_q, g_g = (np.sqrt(m) for m in (plain, sq_euclidean(qf, qf), sq_euclidean(gf, gf)))
    return {"dist": plain, "dist_kr": k_reciprocal(q_g, q_q, g_g, **params),
            "dist_hw": hard_weight(q_g, q_q, g_g, **params)}
