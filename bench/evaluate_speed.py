"""reid.metrics.evaluate against the per-query scikit-learn loop at the challenge size.

    python -m bench.evaluate_speed
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.metrics import average_precision_score

from bench.common import features, measure
from reid.distance import sq_euclidean
from reid.metrics import evaluate


def sklearn_map(distmat: np.ndarray, q_ids: np.ndarray, g_ids: np.ndarray) -> float:
    """The per-query loop that evaluate replaces."""
    aps = [average_precision_score(g_ids == q, -row)
           for q, row in zip(q_ids, distmat, strict=True) if (g_ids == q).any()]
    return float(np.mean(aps))


def main() -> int:
    qf, gf, q_ids, g_ids = features()
    dist = sq_euclidean(qf, gf)
    print(f"inputs: {dist.shape[0]} queries x {dist.shape[1]} gallery")
    expected, loop_s, _ = measure(lambda: sklearn_map(dist, q_ids, g_ids), 2, trace=False)
    got, fast_s, _ = measure(lambda: evaluate(dist, q_ids, g_ids), 5, trace=False)
    diff = abs(got["mAP"] - expected)
    print(f"scikit-learn loop  {loop_s:7.3f} s   mAP {expected:.6f}")
    print(f"evaluate           {fast_s:7.3f} s   mAP {got['mAP']:.6f}  rank-1 {got['rank1']:.4f}")
    ratio = loop_s / fast_s
    ok = ratio >= 5 and diff <= 1e-12
    print(f"speed-up {ratio:.1f}x (target >= 5x), |mAP diff| {diff:.1e}: {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
