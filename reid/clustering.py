"""Group a game's crops into player identities without being told how many players there are.

    labels, confidence = identify(features, groups)

Pipeline, every step in memory proportional to N times the neighbourhood size (no N x N array):

1. **Neighbours.** Each crop's k1 nearest crops by squared Euclidean distance, computed a block
   of rows at a time. With `groups`, a crop's own group (same sequence and frame: certainly
   other people) is left out, and at most one crop of any other group is kept, the nearest,
   since at most one crop of a frame can be the same person.
2. **k-reciprocal vectors** V (docs/RERANKING.md §1 steps 3-6, by reid.rerank.reciprocal_vectors)
   for all N crops at once, and the **Jaccard distance** J = 1 - sum(min) / sum(max)
   of each crop and its k1 candidates only: a sparse graph. A missing pair shares no
   neighbours, which is J = 1.
3. **HDBSCAN** (scikit-learn) on that sparse precomputed graph: dense groups of crops become
   identities, the number of them found, not given; the rest is noise. Components of the
   graph are linked at J = 1 so that HDBSCAN sees one graph; on both splits below (min_samples=1) it
   returns the same partition as on the dense matrix.
4. **Constraint logic.** Every crop is (re)assigned to the identity with the highest mean
   Jaccard similarity (1 - J) to its other members; within a group an identity takes at most
   one crop (the most similar; the others move to their next best), and a crop with no
   similar identity becomes one of its own. Repeated until the assignment settles (at most
   `iterations` times). This places HDBSCAN's noise and ejects the crop that breaks a
   constraint. Then identities that are as similar to each other as within themselves, with
   no group in common, are merged (`merged`), and the assignment runs once more.

**Confidence** of crop i: own / (own + other), where own is its mean similarity to the other
members of its identity and other the highest mean similarity to any other identity (a crop
alone in its identity has own = 1). 1 means nothing else is similar, 0.5 a crop halfway
between two identities, below 0.5 one that its group's constraint pushed away from its best
match.

**Why this method.** Measured with the demo model (checkpoints/demo/lite0_128) on the
synthetic data when this module was written: ARI, identities found K / true K; the test split
(576 crops) with its frame groups, the challenge split (1,012 crops) without any:

    method                                              test ARI   K/30    challenge ARI   K/62
    DBSCAN, eps tuned on the ground truth, Euclidean      0.19      15         0.08          19
    DBSCAN, eps tuned on the ground truth, Jaccard        0.55      23         0.34          33
    average linkage given the true K, Jaccard             0.64      30         0.55          62
    average linkage + cannot-link, best threshold         0.69      67         0.63         145
    HDBSCAN alone (noise as single crops)                 0.71      96         0.61         209
    this module, defaults                                 0.74      36         0.63          60

(identify.py embeds each crop at two input sizes by default, which raises this module's ARI to
0.82 and 0.75, K 34 and 65: the table in docs/IDENTIFY.md.)

Average linkage, with or without the frame constraint, reaches its best ARI only at about
twice the true number of identities, and no one threshold suits both splits. HDBSCAN
with one setting, `min_cluster_size=5` ("an identity has at least five crops"), leaves the
rest as noise; placing that noise under the constraints lands within 20% of the true number
on both splits. The training split cannot tune much (the model was trained on it): with
k1 = 20, k2 = 6 (re-ranking's defaults) every `min_cluster_size` from 3 to 8 scores ARI 1.0
there, and the defaults sit in the middle. 20,000 crops of 1280-d features take 20-30 s
on 2 CPU cores, with a peak of about 170 MiB allocated by `identify`.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph
from sklearn.cluster import HDBSCAN

from reid import memory
from reid.errors import ReidError
from reid.rerank import JointFeatures, reciprocal_vectors, smallest
from reid.rules import Positive, PositiveInt, Range, checked, finite_matrix

# Bytes charged per unit against reid.memory.BUDGET. identify works on one game's crops (thousands), so
# its steps take small shares (tests/test_clustering.py bounds its peak), and the block size fixes how
# the distances round, hence the figures of the module docstring.
_ROW_BYTES = 1 << 9  # an entry of a block of distance rows: 8 MiB blocks (their temporaries are a few times that)
_PAIR_BYTES = 1 << 17  # a pair of the Jaccard step: 8,192 pairs a chunk, two gathered sets of ~100 entries each
_DISTANCE_PAIR_BYTES = 1 << 20  # a pair whose distance is computed: 1,024 pairs a chunk (the rows gathered
# for 65,536 pairs of 1280-d features would take 670 MiB)
_TINY = 1e-9  # stands for a zero distance: a sparse graph drops stored zeros
ClusterSize = Annotated[int, Range(lo=2)]  # HDBSCAN's smallest cluster: one crop is no cluster


@checked
def identify(features: np.ndarray, groups: np.ndarray | None = None, k1: PositiveInt = 20, k2: PositiveInt = 6, *,
             min_cluster_size: ClusterSize = 5, min_samples: PositiveInt = 1, iterations: PositiveInt = 10,
             merge: Positive = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,) int64 identities 0..K-1 numbered largest first, confidence (N,) float32 in [0, 1]).

    `groups` (N,) int64: crops with the same value (sequence, frame) are never one identity;
    -1 is unknown (no constraint). `k1`, `k2`: the re-ranking's neighbourhood sizes.
    `min_cluster_size` and `min_samples` are HDBSCAN's, `iterations` those of the constrained
    reassignment, `merge` the similarity ratio at which two identities become one (see `merged`).
    """
    x = finite_matrix(features, "features")
    n = len(x)
    gid = _group_ids(groups, n)
    if n < 2:
        return np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.float32)
    sim = similarity_graph(x, gid, k1, k2)
    labels = reassign(sim, _hdbscan(sim, min_cluster_size, min_samples), gid, iterations)
    labels = reassign(sim, merged(sim, labels, gid, merge), gid, iterations)
    return _by_size(labels), confidence(sim, labels)


def frame_groups(sequence: np.ndarray, frame: np.ndarray, folder: np.ndarray | None = None) -> np.ndarray:
    """The `groups` argument of `identify` from each crop's sequence and frame: one id per
    (sequence, frame) pair, or per (folder, sequence, frame) where sequence numbers are only
    unique within a folder (crops named by frame in several games' folders)."""
    keys = [sequence, frame] if folder is None else [folder, sequence, frame]
    pairs = np.stack([np.asarray(k, dtype=np.int64) for k in keys], axis=1)
    return np.unique(pairs, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _group_ids(groups: np.ndarray | None, n: int) -> np.ndarray:
    """Group numbers 0..G-1 with every unknown (-1) crop in a group of its own, so one rule serves both."""
    if groups is None:
        return np.arange(n, dtype=np.int64)
    g = np.asarray(groups)
    if g.shape != (n,) or not np.issubdtype(g.dtype, np.integer):
        raise ReidError(f"groups: expected {n} integers, got shape {g.shape} and dtype {g.dtype}")
    g = g.astype(np.int64)
    unknown = g < 0
    g[unknown] = g.max(initial=0) + 1 + np.arange(unknown.sum())
    return np.unique(g, return_inverse=True)[1]


# ---------------------------------------------------------------- the sparse Jaccard graph

@checked
def neighbours(x: np.ndarray, gid: np.ndarray, k: PositiveInt) -> tuple[np.ndarray, np.ndarray]:
    """(rank, top): each crop itself then its k nearest crops, at most one per other group and
    none of its own, nearest first; and each row's largest squared distance, squared (the
    scale of O in §1), for the weights of V.

    Every crop has the same number of admissible neighbours (one per other group), so k is cut
    to that and the lists stay rectangular.
    """
    n = len(x)
    order = np.argsort(gid, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(gid[order]) != 0])
    k = min(k, len(starts) - 1)
    src = JointFeatures(x, n, memory.rows(n, _ROW_BYTES))
    rank = np.empty((n, k + 1), dtype=np.int64)
    rank[:, 0] = np.arange(n)
    top = np.empty(n, dtype=np.float32)
    for start in range(0, n, src.block):
        stop = min(start + src.block, n)
        d = src.rows(start, stop)
        top[start:stop] = d.max(axis=1) ** 2
        if k and len(starts) == n:  # every crop alone in its group: plain nearest neighbours, not itself
            d[np.arange(stop - start), np.arange(start, stop)] = np.inf
            rank[start:stop, 1:] = smallest(d, k)[0]
        elif k:
            nearest, cols = _nearest_per_group(d[:, order], starts, order)
            nearest[np.arange(stop - start), gid[start:stop]] = np.inf
            rank[start:stop, 1:] = np.take_along_axis(cols, smallest(nearest, k)[0], axis=1)
    top[top == 0] = 1
    return rank, top


def _nearest_per_group(d: np.ndarray, starts: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row and group: the smallest distance and the lowest crop index attaining it.

    `d` has its columns sorted by group (column c is crop order[c]); `starts` are the first
    column of each group.
    """
    nearest = np.minimum.reduceat(d, starts, axis=1)
    members = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, d.shape[1]]))
    at_min = np.where(d == nearest[:, members], order[None, :], len(order))
    return nearest, np.minimum.reduceat(at_min, starts, axis=1)


@checked
def kr_vectors(x: np.ndarray, rank: np.ndarray, top: np.ndarray, k1: PositiveInt, k2: PositiveInt) -> sp.csr_matrix:
    """The k-reciprocal vectors V of §1 (steps 3-6) over all crops, from their neighbour lists, with
    the distances of the crops' features computed a small chunk of pairs at a time."""
    pairs = JointFeatures(x, len(x), pairs=memory.entries(_DISTANCE_PAIR_BYTES))
    return reciprocal_vectors(rank, k1, k2, pairs, top)


def jaccard_pairs(v: sp.csr_matrix, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - sum(min) / sum(max) of rows a and b of V, pair by pair; 1 where both rows are empty."""
    mins = np.empty(len(a))
    chunk = memory.entries(_PAIR_BYTES)
    for s in range(0, len(a), chunk):
        rows_a, rows_b = v[a[s:s + chunk]], v[b[s:s + chunk]]
        mins[s:s + chunk] = np.asarray(rows_a.minimum(rows_b).sum(axis=1)).ravel()
    mass = np.asarray(v.sum(axis=1)).ravel()
    union = mass[a] + mass[b] - mins
    return 1 - np.divide(mins, union, out=np.zeros_like(mins), where=union > 0)


@checked
def similarity_graph(x: np.ndarray, gid: np.ndarray, k1: PositiveInt, k2: PositiveInt) -> sp.csr_matrix:
    """Symmetric sparse (N, N) of 1 - J over each crop's k1 candidates, no diagonal; a candidate
    sharing no neighbour stays stored (as 0), so that HDBSCAN sees every crop's candidates."""
    n = len(x)
    rank, top = neighbours(x, gid, max(k1, k2 - 1))
    v = kr_vectors(x, rank, top, k1, k2)
    i = np.repeat(np.arange(n), rank.shape[1] - 1)
    j = rank[:, 1:].ravel()
    key = np.unique(np.minimum(i, j) * n + np.maximum(i, j))
    a, b = key // n, key % n
    s = 1 - jaccard_pairs(v, a, b)
    return sp.coo_matrix((np.r_[s, s], (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()


# ---------------------------------------------------------------- clustering and constraints

def _hdbscan(sim: sp.csr_matrix, min_cluster_size: int, min_samples: int) -> np.ndarray:
    """HDBSCAN labels (-1 noise) on the Jaccard distances of `sim`, pairs not in it being 1.

    The diagonal is stored (as a tiny distance) so that min_samples counts the crop itself,
    as for a dense matrix, and the graph's components are chained at distance 1, the distance
    of crops that share no neighbour, since HDBSCAN needs one connected graph. min_samples is
    cut to the fewest entries of a row (only tiny inputs have fewer than k1).
    """
    n = sim.shape[0]
    if n <= min_cluster_size:
        return np.full(n, -1)
    pairs = sim.tocoo()
    diag = np.arange(n)
    dist = sp.csr_matrix((np.r_[np.maximum(1 - pairs.data, _TINY), np.full(n, _TINY)],
                          (np.r_[pairs.row, diag], np.r_[pairs.col, diag])), shape=(n, n))
    n_comp, comp = csgraph.connected_components(dist, directed=False)
    first = np.unique(comp, return_index=True)[1]
    links = sp.csr_matrix((np.ones(2 * (n_comp - 1)), (np.r_[first[:-1], first[1:]], np.r_[first[1:], first[:-1]])),
                          shape=(n, n))
    dist = (dist + links).tocsr()
    min_samples = min(min_samples, int(np.diff(dist.indptr).min()))
    model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, metric="precomputed", copy=True)
    return model.fit_predict(dist)


def affinity(sim: sp.csr_matrix, labels: np.ndarray) -> sp.csr_matrix:
    """(N, K) sparse: mean similarity of each crop to the *other* members of each identity."""
    n, k = len(labels), labels.max() + 1
    member = sp.csr_matrix((np.ones(n), (np.arange(n), labels)), shape=(n, k))
    aff = (sim @ member).tocsr()
    rows = np.repeat(np.arange(n), np.diff(aff.indptr))
    others = np.bincount(labels, minlength=k)[aff.indices] - (labels[rows] == aff.indices)
    aff.data /= np.maximum(others, 1)
    return aff


def pick(aff: sp.csr_matrix, gid: np.ndarray) -> np.ndarray:
    """Each crop's most similar identity, -1 where none is similar, such that no identity takes
    two crops of one group: the most similar crop wins, the others try their next best.

    Each round settles at least the best claim on every (group, identity), so the rounds are
    at most the largest group's size.
    """
    n, k = aff.shape
    coo = aff.tocoo()
    r, c, v = coo.row, coo.col, coo.data
    keep = v > 0
    r, c, v = r[keep], c[keep], v[keep]
    out = np.full(n, -1)
    while r.size:
        order = np.lexsort((c, -v, r))
        r, c, v = r[order], c[order], v[order]
        first = np.r_[True, r[1:] != r[:-1]]
        claim_r, claim_c, claim_v = r[first], c[first], v[first]
        claim_key = gid[claim_r] * k + claim_c
        order = np.lexsort((claim_r, -claim_v, claim_key))
        won = order[np.r_[True, claim_key[order][1:] != claim_key[order][:-1]]]
        out[claim_r[won]] = claim_c[won]
        left = (out[r] < 0) & ~np.isin(gid[r] * k + c, claim_key[won])
        r, c, v = r[left], c[left], v[left]
    return out


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered by first appearance, so equal partitions compare equal."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse]


@checked
def reassign(sim: sp.csr_matrix, labels: np.ndarray, gid: np.ndarray, iterations: PositiveInt) -> np.ndarray:
    """`pick` against the current identities until nothing moves; a crop that nothing claims
    becomes an identity of its own.

    HDBSCAN's noise (-1) is no identity in the first round: a single crop would otherwise
    attract its nearest neighbours away from the mean of a large identity.
    """
    for _ in range(iterations):
        clusters = labels >= 0
        new = np.full(len(labels), -1)
        if clusters.any():
            aff = affinity(sim, np.where(clusters, labels, labels.max() + 1))
            new = pick(aff[:, :labels.max() + 1], gid)
        alone = new < 0
        new[alone] = new.max(initial=-1) + 1 + np.arange(alone.sum())
        new = _canonical(new)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


@checked
def merged(sim: sp.csr_matrix, labels: np.ndarray, gid: np.ndarray, ratio: Positive) -> np.ndarray:
    """Identities A and B become one when no group has a crop in both and their crops are, on
    average, at least `ratio` times as similar across (A, B) as within the less coherent of the
    two (a single crop has no coherence of its own; two single crops need a similarity of `ratio`).

    This undoes HDBSCAN's splits of one identity in two (both halves then score about 1; two
    people score near 0 on the training split) and gathers the crops that a group's constraint
    pushed out of an identity into one of their own. Each round merges the pairs that are each
    other's best, so the rounds are at most the number of identities.
    """
    n = len(labels)
    while True:
        k = labels.max() + 1
        member = sp.csr_matrix((np.ones(n), (np.arange(n), labels)), shape=(n, k))
        size = np.bincount(labels, minlength=k).astype(float)
        sums = (member.T @ sim @ member).tocoo()
        on_diag = sums.row == sums.col
        within = np.zeros(k)
        within[sums.row[on_diag]] = sums.data[on_diag] / (size * (size - 1))[sums.row[on_diag]]
        within[size < 2] = np.inf
        a, b, w = sums.row[~on_diag], sums.col[~on_diag], sums.data[~on_diag]
        coherent = np.minimum(within[a], within[b])
        coherent[np.isinf(coherent)] = 1
        score = np.divide(w / (size[a] * size[b]), coherent, out=np.zeros_like(w), where=coherent > 0)
        per_group = (member.T @ sp.csr_matrix((np.ones(n), (np.arange(n), gid)))).tocsr()
        shared = (per_group @ per_group.T).tocoo()
        ok = (score >= ratio) & ~np.isin(a * k + b, shared.row * k + shared.col)
        a, b, score = a[ok], b[ok], score[ok]
        if not a.size:
            return labels
        order = np.lexsort((b, -score, a))
        a, b = a[order], b[order]
        first = np.r_[True, a[1:] != a[:-1]]
        best = np.full(k, -1)
        best[a[first]] = b[first]
        mutual = np.flatnonzero((best >= 0) & (best[np.maximum(best, 0)] == np.arange(k)))
        target = np.arange(k)
        target[mutual] = np.minimum(mutual, best[mutual])
        labels = _canonical(target[labels])


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Identities renumbered largest first (ties: first appearance first), int64."""
    labels = _canonical(labels)
    sizes = np.bincount(labels)
    order = np.lexsort((np.arange(len(sizes)), -sizes))
    new = np.empty_like(order)
    new[order] = np.arange(len(order))
    return new[labels].astype(np.int64)


def confidence(sim: sp.csr_matrix, labels: np.ndarray) -> np.ndarray:
    """own / (own + other) per crop (see the module docstring), float32 in [0, 1]."""
    n = len(labels)
    coo = affinity(sim, labels).tocoo()
    mine = coo.col == labels[coo.row]
    own = np.zeros(n)
    own[coo.row[mine]] = coo.data[mine]
    other = np.zeros(n)
    np.maximum.at(other, coo.row[~mine], coo.data[~mine])
    own[np.bincount(labels)[labels] == 1] = 1
    total = own + other
    return np.divide(own, total, out=np.zeros(n), where=total > 0).astype(np.float32)
