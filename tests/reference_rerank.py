"""Slow, plain implementations written from the words of docs/RERANKING.md, for the tests to compare with.

Loops and dense matrices everywhere: these favour being obviously right over being fast.
Neighbour lists sort by (distance, index), the documented tie rule.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score


def joint(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> np.ndarray:
    """D = [[q_q, q_g], [q_g.T, g_g]]."""
    return np.block([[q_q, q_g], [q_g.T, g_g]])


def nearest(row: np.ndarray, candidates, k: int) -> list[int]:
    """The k candidates with the smallest row value, ties to the lower index."""
    return sorted(candidates, key=lambda j: (row[j], j))[:k]


def k_reciprocal_steps(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3) -> dict:
    """§1, step by step, with every intermediate by name (sets as lists of joint indices)."""
    nq = len(q_q)
    d = np.square(joint(q_g, q_q, g_g)).astype(np.float32)
    o = (d / d.max(axis=0)).T
    n = len(o)
    rank = [nearest(o[i], range(n), n) for i in range(n)]

    def reciprocal_set(i: int, k: int) -> list[int]:
        return [j for j in rank[i][:k] if i in rank[j][:k]]

    h = int(np.around(k1 / 2))
    v = np.zeros((n, n))
    forward, reciprocal, half, expanded = [], [], [], []
    for i in range(n):
        r = reciprocal_set(i, k1 + 1)
        e = set(r)
        for c in r:
            rc = reciprocal_set(c, h + 1)
            if len(set(rc) & set(r)) > 2 / 3 * len(rc):
                e |= set(rc)
        e = sorted(e)
        w = np.exp(-o[i, e].astype(np.float64))
        v[i, e] = w / w.sum()
        forward.append(rank[i][:k1 + 1])
        reciprocal.append(r)
        half.append(reciprocal_set(i, h + 1))
        expanded.append(e)
    v_qe = np.array([v[rank[i][:k2]].mean(axis=0) for i in range(n)]) if k2 != 1 else v
    jaccard = np.zeros((nq, n))
    for i in range(nq):
        for j in range(n):
            m = np.minimum(v_qe[i], v_qe[j]).sum()
            jaccard[i, j] = 1 - m / (2 - m)
    final = (1 - lambda_value) * jaccard + lambda_value * o[:nq]
    return {"O": o, "F": forward, "R": reciprocal, "R_half": half, "E": expanded, "V": v, "V_qe": v_qe,
            "jaccard": jaccard[:, nq:], "final": final[:, nq:]}


def k_reciprocal(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3) -> np.ndarray:
    """§1, step by step."""
    return k_reciprocal_steps(q_g, q_q, g_g, k1, k2, lambda_value)["final"]


def hard_weight_steps(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3, expansion=2 / 3) -> dict:
    """§2, step by step, with every intermediate by name; Rg[g] and Rh[g] always hold g itself.

    Sets are sorted lists of joint indices (gallery image g is nq + its gallery index).
    """
    nq, ng = q_g.shape
    n = nq + ng
    a = joint(q_g, q_q, g_g)
    everyone, gallery = range(n), range(nq, n)
    nq_lists = {i: nearest(a[i], everyone, k1) for i in range(nq)}
    na_lists = {g: nearest(a[g], everyone, k1) for g in gallery}
    ng_lists = {g: nearest(a[g], gallery, k1) for g in gallery}

    def gallery_set(g: int, k: int) -> set[int]:
        return {g} | {h for h in ng_lists[g][:k] if g in ng_lists[h][:k]}

    rq = {i: {g for g in nq_lists[i] if g >= nq and i in na_lists[g]} for i in range(nq)}
    rg = {g: gallery_set(g, k1) for g in gallery}
    rh = {g: gallery_set(g, k1 // 2) for g in gallery}
    rq_star = {}
    for i in range(nq):
        rq_star[i] = set(rq[i])
        for g in rq[i]:
            if len(rq[i] & rh[g]) >= expansion * len(rh[g]):
                rq_star[i] |= rh[g]
    rg_star = {}
    for g in gallery:
        rg_star[g] = set(rg[g])
        others = rg[g] - {g}
        for h in others:
            if len(others & rh[h]) >= expansion * len(rh[h]):
                rg_star[g] |= rh[h]
    vq = np.zeros((nq, ng))
    vg = np.zeros((ng, ng))
    for i in range(nq):
        vq[i, [g - nq for g in rq_star[i]]] = 1
    for g in gallery:
        vg[g - nq, [h - nq for h in rg_star[g]]] = 1

    def vector(j: int) -> np.ndarray:
        return vq[j] if j < nq else vg[j - nq]

    vq2 = np.array([np.mean([vector(j) for j in nearest(a[i], everyone, k2)], axis=0) for i in range(nq)])
    vg2 = np.zeros_like(vg)
    for g in gallery:
        near = nearest(a[g], [h for h in gallery if h != g], k2)
        vg2[g - nq] = np.mean([vg[h - nq] for h in near], axis=0) if near else vg[g - nq]
    jaccard = np.zeros((nq, ng))
    for i in range(nq):
        for g in range(ng):
            jaccard[i, g] = 1 - np.minimum(vq2[i], vg2[g]).sum() / np.maximum(vq2[i], vg2[g]).sum()
    rownorm = q_g / np.linalg.norm(q_g, axis=1, keepdims=True)

    def listed(sets: dict) -> list[list[int]]:
        return [sorted(sets[key]) for key in sorted(sets)]

    return {"NQ": [nq_lists[i] for i in range(nq)], "NA": [na_lists[g] for g in gallery],
            "NG": [ng_lists[g] for g in gallery], "Rq": listed(rq), "Rg": listed(rg), "Rh": listed(rh),
            "Rq*": listed(rq_star), "Rg*": listed(rg_star), "Vq'": vq2, "Vg'": vg2, "jaccard": jaccard,
            "final": lambda_value * rownorm + (1 - lambda_value) * jaccard}


def hard_weight(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3, expansion=2 / 3) -> np.ndarray:
    """§2, step by step."""
    return hard_weight_steps(q_g, q_q, g_g, k1, k2, lambda_value, expansion)["final"]


def evaluate(distmat, query_ids, gallery_ids, query_cams=None, gallery_cams=None) -> dict[str, float]:
    """§5 with scikit-learn, one query at a time; first match found with a stable sort. With
    cameras, each query's gallery loses the images of its player taken by its camera."""
    aps, firsts = [], []
    for i in range(len(query_ids)):
        keep = np.ones(len(gallery_ids), dtype=bool)
        if query_cams is not None:
            keep = ~((np.asarray(gallery_ids) == query_ids[i]) & (np.asarray(gallery_cams) == query_cams[i]))
        match = np.asarray(gallery_ids)[keep] == query_ids[i]
        row = distmat[i][keep]
        if not match.any():
            continue
        aps.append(average_precision_score(match, -row))
        order = np.argsort(row, kind="stable")
        firsts.append(int(np.flatnonzero(match[order])[0]))
    firsts = np.array(firsts)
    return {"mAP": float(np.mean(aps)), "rank1": float(np.mean(firsts < 1)),
            "rank5": float(np.mean(firsts < 5)), "rank10": float(np.mean(firsts < 10))}


def mean_fuse(mats, weights=None) -> np.ndarray:
    """§4, weighted element-wise mean."""
    weights = np.ones(len(mats)) if weights is None else np.asarray(weights, dtype=float)
    return sum(w * m for w, m in zip(weights, mats, strict=True)) / weights.sum()


def dissim_fuse(mats, topk=15, min_votes=None) -> np.ndarray:
    """§4, row by row."""
    n_models = len(mats)
    min_votes = n_models // 2 + 1 if min_votes is None else min_votes
    nq, ng = mats[0].shape
    out = np.zeros((nq, ng))
    for i in range(nq):
        tops = [set(nearest(m[i], range(ng), topk)) for m in mats]
        good = {g for g in range(ng) if sum(g in t for t in tops) >= min_votes}
        counts = [len(good & t) for t in tops]
        total = sum(counts)
        if total == 0:
            p = [1 / n_models] * n_models
        else:
            p = [c / total if c else 0.1 for c in counts]
        inv = [1 / x for x in p]
        w = [x / sum(inv) for x in inv]
        out[i] = sum(wm * m[i] for wm, m in zip(w, mats, strict=True))
    return out
