"""Evaluation: mAP and CMC ranks of a distance matrix (docs/RERANKING.md §5), and the agreement
of a grouping into identities with the true players (ARI, NMI, K).

AP is scikit-learn's `average_precision_score(is_match, -distance)` over the whole gallery,
tied distances included. scikit-learn integrates precision over *distinct* thresholds, so a
match at distance v contributes `#matches(d <= v) / #images(d <= v)`: the precision at the
end of its group of ties. That needs only counts, which come from one sort of every row and
a binary search for each match, for all queries at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from reid import memory
from reid.errors import ReidError
from reid.rules import finite_matrix

# Bytes charged per distance entry of a chunk of query rows against reid.memory.BUDGET: 4 Mi entries a
# chunk, whose codes, sorted keys and masks take 26 bytes an entry (31 with cameras; tracemalloc), so a
# chunk holds about an eighth of the budget.
_ENTRY_BYTES = 256


def _ordinals(dist: np.ndarray) -> np.ndarray:
    """uint32 codes with the same order and the same ties as the distances."""
    if dist.dtype == np.float32:
        bits = (dist + np.float32(0)).view(np.uint32)  # -0.0 + 0 is +0.0: equal values, equal codes
        return np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))
    return np.unique(dist, return_inverse=True)[1].reshape(dist.shape).astype(np.uint32)


def _chunk_scores(dist: np.ndarray, matches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AP and 0-based first-match rank of each row of a chunk (every row has a match)."""
    n, ng = dist.shape
    codes = _ordinals(dist)
    rows = np.arange(n, dtype=np.uint64)
    # Keys ordered by (row, distance): one binary search then serves every row at once.
    all_keys = (rows[:, None] << np.uint64(32)) | np.sort(codes, axis=1)
    r, c = np.nonzero(matches)
    match_keys = (r.astype(np.uint64) << np.uint64(32)) | codes[r, c]
    sorted_match_keys = np.sort(match_keys)
    row_starts = np.searchsorted(r, np.arange(n))
    images_le = np.searchsorted(all_keys.ravel(), match_keys, side="right") - r * ng
    matches_le = np.searchsorted(sorted_match_keys, match_keys, side="right") - row_starts[r]
    ap = np.bincount(r, weights=matches_le / images_le, minlength=n) / np.bincount(r, minlength=n)
    # First match in a stable sort: images strictly closer, plus equal ones earlier in the gallery.
    best = sorted_match_keys[row_starts]
    at_best = match_keys == best[r]
    first_col = np.full(n, ng)
    np.minimum.at(first_col, r[at_best], c[at_best])
    closer = np.searchsorted(all_keys.ravel(), best, side="left") - np.arange(n) * ng
    best_code = codes[np.arange(n), first_col]
    earlier_ties = ((codes == best_code[:, None]) & (np.arange(ng) < first_col[:, None])).sum(axis=1)
    return ap, closer + earlier_ties


def _same_camera(query_ids: np.ndarray, gallery_ids: np.ndarray, query_cams: np.ndarray | None,
                 gallery_cams: np.ndarray | None) -> np.ndarray | None:
    """(nq, ng) pairs the Market-1501 protocol leaves out: the same player seen by the same
    camera (an easy near-duplicate, not a re-identification); None without cameras."""
    if query_cams is None and gallery_cams is None:
        return None
    if query_cams is None or gallery_cams is None:
        raise ReidError("camera ids must be given for both the queries and the gallery, or for neither")
    query_cams, gallery_cams = np.asarray(query_cams), np.asarray(gallery_cams)
    if query_cams.shape != query_ids.shape or gallery_cams.shape != gallery_ids.shape:
        raise ReidError(f"{len(query_cams)} query and {len(gallery_cams)} gallery camera ids for "
                        f"{len(query_ids)} queries and {len(gallery_ids)} gallery images")
    return (query_ids[:, None] == gallery_ids[None, :]) & (query_cams[:, None] == gallery_cams[None, :])


def scorable(query_ids: np.ndarray, gallery_ids: np.ndarray, query_cams: np.ndarray | None = None,
             gallery_cams: np.ndarray | None = None) -> np.ndarray:
    """Which queries `evaluate` scores: those with a gallery match that counts (with cameras, one
    taken by another camera). Known from the labels alone, so a stage can refuse a split nothing
    can score before any model runs, and say of how many queries its figures are."""
    matches = pd.Series(gallery_ids).value_counts().reindex(query_ids, fill_value=0).to_numpy()
    if query_cams is None or gallery_cams is None:
        return matches > 0
    same = pd.DataFrame({"id": gallery_ids, "cam": gallery_cams}).value_counts()
    same = same.reindex(pd.MultiIndex.from_arrays([query_ids, query_cams], names=["id", "cam"]), fill_value=0)
    return matches - same.to_numpy() > 0


def evaluate(distmat: np.ndarray, query_ids: np.ndarray, gallery_ids: np.ndarray,
             query_cams: np.ndarray | None = None, gallery_cams: np.ndarray | None = None) -> dict[str, float]:
    """mAP and rank-1/5/10 (fractions) over the queries that have a match in the gallery.

    Ranks use the first-match rule, ties broken by gallery order (as a stable sort would).
    With camera ids, each query's gallery images of the same player *and* the same camera are
    left out of its ranking (the Market-1501 protocol), and `excluded` counts those pairs;
    without, every gallery image counts.
    """
    query_ids = np.asarray(query_ids)
    gallery_ids = np.asarray(gallery_ids)
    # Shapes must agree: a silent broadcast would score nonsense.
    distmat = finite_matrix(distmat, "distance matrix", (len(query_ids), len(gallery_ids)), dtype=None,
                            sizes="query and gallery ids")
    nq, ng = distmat.shape
    rows = memory.rows(ng, _ENTRY_BYTES)
    aps, firsts, excluded = [], [], 0
    for start in range(0, nq, rows):
        chunk = slice(start, start + rows)
        dist = distmat[chunk]
        matches = query_ids[chunk, None] == gallery_ids[None, :]
        left_out = _same_camera(query_ids[chunk], gallery_ids, None if query_cams is None else
                                np.asarray(query_cams)[chunk], gallery_cams)
        if left_out is not None:
            # Last in every ranking and no match: as if absent from this query's gallery.
            dist = np.where(left_out, np.inf, dist).astype(distmat.dtype, copy=False)
            matches &= ~left_out
            excluded += int(left_out.sum())
        valid = matches.any(axis=1)
        ap, first = _chunk_scores(dist[valid], matches[valid])
        aps.append(ap)
        firsts.append(first)
    ap = np.concatenate(aps)
    first = np.concatenate(firsts)
    if ap.size == 0:
        raise ReidError("no query has a matching identity in the gallery")
    scores = {"mAP": float(ap.mean()), "rank1": float((first < 1).mean()),
              "rank5": float((first < 5).mean()), "rank10": float((first < 10).mean())}
    return scores if query_cams is None and gallery_cams is None else scores | {"excluded": excluded}


def clustering_scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Adjusted Rand index and normalised mutual information of `labels` against the true
    players (both 1 for a perfect grouping; ARI about 0 for chance), with the two counts."""
    if len(labels) != len(truth):
        raise ReidError(f"{len(labels)} labels for {len(truth)} true players")
    return {"ARI": float(adjusted_rand_score(truth, labels)), "NMI": float(normalized_mutual_info_score(truth, labels)),
            "K": int(len(np.unique(labels))), "true_K": int(len(np.unique(truth)))}
