"""identify.py's clustering against the usual recipes, on the same features; and 20,000 crops end to end.

    python -m bench.identify                       # after `make demo` (its data and lite0_128 model)
    python -m bench.identify --scale=0             # the comparison only

On the test split (query and gallery together; frame constraints from the names, which only
`identify` uses) and the challenge split (no constraints) of the synthetic data, features from
the demo's trained `lite0_128`:

- DBSCAN on Euclidean distances, and on k-reciprocal Jaccard distances, each with the eps that
  scores best *against the ground truth* (scikit-learn's default min_samples=5; noise counted
  as one cluster): the usual recipe, given an advantage no user has;
- average linkage on Jaccard distances given the *true* number of players;
- `reid.clustering.identify`: no count, no ground truth.

Then `--scale` generated player crops (reid.synthetic: one scene and ten players a sequence,
official names, so frames constrain and players score) go through `identify.py` in a fresh
process, embedding included: wall seconds and peak memory (the process's maximum resident set).
References use dense N x N matrices (fine at these sizes); `identify` never does.
"""

from __future__ import annotations

import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.cluster import DBSCAN

from reid import clustering
from reid.api import Embedder
from reid.config import Count, PositiveInt, format_config, run
from reid.data import parse_name
from reid.errors import ReidError
from reid.metrics import clustering_scores
from reid.synthetic.crops import sample_crops

EPS = np.linspace(0.01, 1.5, 150)  # the eps grid searched against the ground truth
PER_SEQUENCE = 500  # generated crops per sequence: 50 frames of 10 players


@dataclass
class Config:
    data_dir: Path = Path("data/synthetic")  # the demo's synthetic data: <data_dir>/data_reid/
    checkpoint: Path = Path("checkpoints/demo/lite0_128")  # the demo's trained model
    k1: PositiveInt = 20  # re-ranking neighbourhood, for every Jaccard distance here
    k2: PositiveInt = 6  # local query expansion
    scale: Count = 20000  # generated crops for the end-to-end run; 0 skips it
    workers: PositiveInt = 2  # processes generating crops, threads decoding them


def split_images(root: Path, split: str) -> tuple[list[Path], np.ndarray, np.ndarray | None]:
    """(paths, true players, frame groups or None) of a split, query and gallery together."""
    if split == "test":
        paths = sorted((root / "reid_test").rglob("*.jpeg"))
        parsed = np.array([parse_name(p.name) for p in paths])
        return paths, parsed[:, 0], clustering.frame_groups(parsed[:, 1], parsed[:, 2])
    truth = pd.read_csv(root / "reid_challenge" / "ground_truth.csv")
    return [root / p for p in truth["img_id"]], truth["player"].to_numpy(), None


def euclidean(f: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(2 - 2 * f @ f.T, 0))


def jaccard(f: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """Dense k-reciprocal Jaccard distances of every pair, from the same V as identify's."""
    n = len(f)
    rank, top = clustering.neighbours(f, np.arange(n), max(k1, k2 - 1))
    v = clustering.kr_vectors(f, rank, top, k1, k2)
    a, b = np.triu_indices(n, 1)
    d = np.zeros((n, n))
    d[a, b] = d[b, a] = np.maximum(clustering.jaccard_pairs(v, a, b), 0)
    return d


def dbscan_best(d: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """DBSCAN's labels at the eps that scores best against the ground truth."""
    runs = (DBSCAN(eps=e, min_samples=5, metric="precomputed").fit_predict(d) for e in EPS)
    return max(runs, key=lambda labels: clustering_scores(labels, truth)["ARI"])


def average_true_k(d: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return fcluster(linkage(squareform(d, checks=False), method="average"), len(np.unique(truth)), "maxclust")


def compare(f: np.ndarray, truth: np.ndarray, groups: np.ndarray | None, cfg: Config) -> list[dict]:
    """One row per method: ARI, NMI, K and the seconds of distances plus clustering (for DBSCAN, its
    whole eps search)."""
    methods: dict[str, Callable[[], np.ndarray]] = {
        "DBSCAN, Euclidean, eps tuned on the truth": lambda: dbscan_best(euclidean(f), truth),
        "DBSCAN, Jaccard, eps tuned on the truth": lambda: dbscan_best(jaccard(f, cfg.k1, cfg.k2), truth),
        "average linkage, Jaccard, true K given": lambda: average_true_k(jaccard(f, cfg.k1, cfg.k2), truth),
        "identify.py (no K, no truth)": lambda: clustering.identify(f, groups, cfg.k1, cfg.k2)[0],
    }
    rows = []
    for name, method in methods.items():
        started = time.perf_counter()
        labels = method()
        rows.append({"method": name, **clustering_scores(labels, truth), "seconds": time.perf_counter() - started})
    return rows


def write_sequence(job: tuple[Path, int]) -> None:
    """One generated sequence: 50 frames of the same 10 players, named {player}_{sequence}_{frame}."""
    folder, sequence = job
    for i, crop in enumerate(sample_crops(PER_SEQUENCE, seed=sequence)):
        Image.fromarray(crop).save(folder / f"{sequence * 10 + i % 10:05d}_{sequence:03d}_{i // 10:02d}.jpeg",
                                   quality=90)


def end_to_end(cfg: Config) -> str:
    """identify.py on `scale` generated crops in a child process: its output, seconds and peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        crops = Path(tmp) / "crops"
        crops.mkdir()
        jobs = [(crops, s) for s in range(-(-cfg.scale // PER_SEQUENCE))]
        with multiprocessing.Pool(cfg.workers) as pool:
            pool.map(write_sequence, jobs)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "identify.py", f"--images={crops}", f"--checkpoints={cfg.checkpoint}",
                               f"--out_dir={Path(tmp) / 'out'}", f"--num_workers={cfg.workers}", "--device=cpu"],
                              capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode:
            raise ReidError(f"identify.py failed: {done.stderr.strip()[-300:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    lines = [line for line in done.stdout.splitlines() if "->" in line or "ARI" in line]
    return "\n".join(lines) + f"\nend to end (embedding included): {seconds:.0f} s, peak memory {peak:.2f} GiB"


def markdown(rows: list[dict]) -> str:
    out = ["| split | method | ARI | NMI | K / true K | seconds |", "|---|---|---|---|---|---|"]
    out += [f"| {r['split']} | {r['method']} | {r['ARI']:.2f} | {r['NMI']:.2f} | {r['K']} / {r['true_K']} | "
            f"{r['seconds']:.1f} |" for r in rows]
    return "\n".join(out)


def main(cfg: Config) -> None:
    print(format_config(cfg))
    root = cfg.data_dir / "data_reid"
    if not (root / "reid_challenge" / "ground_truth.csv").is_file():
        raise ReidError(f"no synthetic data with ground truth under {root}: run `make demo` first")
    embedder = Embedder.from_checkpoint(cfg.checkpoint, workers=cfg.workers)
    rows = []
    for split in ("test", "challenge"):
        paths, truth, groups = split_images(root, split)
        f = embedder.embed(paths, progress=True, desc=split)
        rows += [{"split": split, **row} for row in compare(f, truth, groups, cfg)]
    print(markdown(rows))
    if cfg.scale:
        print(end_to_end(cfg))


if __name__ == "__main__":
    run(main, Config)
