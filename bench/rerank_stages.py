"""Where the time of rerank_features goes, with the NumPy search and with the torch search on the CPU.

    python -m bench.rerank_stages [--sizes=5000,20000] [--methods=k_reciprocal,hard_weight]

For each size, each method and each search, one re-ranking of clustered, L2-normalised 256-d
features (6% of them queries, as the challenge) split into its three parts: the neighbour
search (the distance blocks and their k nearest, the only device-dependent step), the set
logic (k-reciprocal sets, expansion, weights, local query expansion) and the Jaccard step with
the blend. Times come from cProfile's cumulative time of the search and of the blend (the rest
is the set logic), so they carry its small overhead; the last column is the whole run's time
without the profiler. Also prints whether both searches gave the same output.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch

from bench.common import features
from reid.config import run
from reid.rerank import rerank_features
from reid.rules import Checked, Range

Images = Annotated[int, Range(lo=2)]  # a re-ranking needs a query and a gallery image
SEARCHES = {"numpy": None, "torch-cpu": "cpu"}  # the device= of each search


@dataclass
class Config(Checked):
    sizes: tuple[Images, ...] = (5000, 20000)  # images (queries + gallery) per re-ranking
    methods: tuple[Literal["k_reciprocal", "hard_weight"], ...] = ("k_reciprocal", "hard_weight")  # re-rankings


def cumulative(stats: pstats.Stats, name: str) -> float:
    """Seconds spent inside the functions called `name` (summed over classes), callees included."""
    return sum(row[3] for (_, _, func), row in stats.stats.items() if func == name)


def stages(qf: np.ndarray, gf: np.ndarray, method: str, search: str) -> tuple[np.ndarray, dict[str, float]]:
    """(output, seconds by part) of one profiled re-ranking, and its unprofiled wall time."""
    start = time.perf_counter()
    out = rerank_features(qf, gf, method=method, device=SEARCHES[search])
    wall = time.perf_counter() - start
    profile = cProfile.Profile()
    profile.runcall(rerank_features, qf, gf, method=method, device=SEARCHES[search])
    stats = pstats.Stats(profile)
    total = stats.total_tt
    found = cumulative(stats, "ranked" if method == "k_reciprocal" else "tables")
    jaccard = cumulative(stats, "_blend")
    return out, {"search": found, "sets": total - found - jaccard, "jaccard": jaccard, "total": wall}


def main(cfg: Config) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; seconds (share of the profiled run)")
    print(f"{'images':>7s} {'method':13s} {'search':10s} {'search':>14s} {'sets':>14s} {'jaccard':>14s} "
          f"{'total':>7s}  same output")
    for n in cfg.sizes:
        nq = max(1, round(0.06 * n))
        qf, gf, _, _ = features(nq, n - nq, seed=n)
        for method in cfg.methods:
            outputs = {}
            for search in SEARCHES:
                outputs[search], t = stages(qf, gf, method, search)
                parts = t["search"] + t["sets"] + t["jaccard"]
                cells = " ".join(f"{t[k]:6.2f} ({t[k] / parts:4.0%})" for k in ("search", "sets", "jaccard"))
                same = np.array_equal(outputs[search], outputs["numpy"])
                diff = float(np.abs(outputs[search] - outputs["numpy"]).max())
                print(f"{n:7d} {method:13s} {search:10s} {cells} {t['total']:7.2f}  "
                      f"{'yes' if same else f'max |diff| {diff:.1e}'}")


if __name__ == "__main__":
    run(main, Config)
