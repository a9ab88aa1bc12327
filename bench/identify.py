"""identify.py's clustering against the usual recipes, on the same features; and 20,000 crops end to end.

    python -m bench.identify                       # after `make demo` (its data and lite0_128 model)
    python -m bench.identify --scale=0             # the comparison only
    python -m bench.identify --scale=0 --tta=true  # and identify.py's test-time augmentation, each setting

On the test split (query and gallery together; frame constraints from the names, which only
`identify` uses) and the challenge split (no constraints) of the synthetic data, features from
the demo's trained `lite0_128` embedded as identify.py does by default (at 1 and 1.25 times its
input size, averaged):

- DBSCAN on Euclidean distances, and on k-reciprocal Jaccard distances, each with the eps that
  scores best *against the ground truth* (scikit-learn's default min_samples=5; noise counted
  as one cluster): the usual recipe, given an advantage no user has;
- average linkage on Jaccard distances given the *true* number of players;
- `reid.clustering.identify`: no count, no ground truth.

Then `--scale` generated player crops (reid.synthetic: one scene and ten players a sequence,
official names, so frames constrain and players score) go through `identify.py` in a fresh
process, embedding included: wall seconds and peak memory (the process's maximum resident set).
References use dense N x N matrices (fine at these sizes); `identify` never does.

`--tta=true` embeds both splits under each test-time augmentation setting of TTA (the table in
docs/IDENTIFY.md): rank-1 (each crop's nearest other crop outside its frame is the same
player), identify's ARI and K, and the embedding seconds relative to one plain pass.
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
from reid.config import format_config, run
from reid.errors import ReidError
from reid.layouts import parse_name
from reid.metrics import clustering_scores
from reid.rules import Checked, Count, Positive, PositiveInt
from reid.synthetic.crops import sample_crops

EPS = np.linspace(0.01, 1.5, 150)  # the eps grid searched against the ground truth
PER_SEQUENCE = 500  # generated crops per sequence: 50 frames of 10 players
TTA = (((1.0,), False), ((1.0,), True), ((1.0, 1.125), False), ((1.0, 1.25), False), ((1.0, 1.25), True),
       ((0.875, 1.0, 1.125), True))  # (scales, flip) settings compared by --tta


@dataclass
class Config(Checked):
    data_dir: Path = Path("data/synthetic")  # the demo's synthetic data: <data_dir>/data_reid/
    checkpoint: Path = Path("checkpoints/demo/lite0_128")  # the demo's trained model
    scales: tuple[Positive, ...] = (1.0, 1.25)  # test-time scales, as identify.py's default
    flip_tta: bool = False  # test-time mirroring, as identify.py's default
    tta: bool = False  # also compare the test-time augmentation settings of TTA
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
                               f"--out_dir={Path(tmp) / 'out'}", f"--num_workers={cfg.workers}", "--device=cpu",
                               f"--scales={','.join(map(str, cfg.scales))}", f"--flip_tta={cfg.flip_tta}"],
                              capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode:
            raise ReidError(f"identify.py failed: {done.stderr.strip()[-300:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    lines = [line for line in done.stdout.splitlines() if "->" in line or "ARI" in line]
    return "\n".join(lines) + f"\nend to end (embedding included): {seconds:.0f} s, peak memory {peak:.2f} GiB"


def rank1(f: np.ndarray, truth: np.ndarray, groups: np.ndarray | None) -> float:
    """How often a crop's nearest other crop outside its frame shows the same player."""
    d = 2 - 2 * f @ f.T
    d[np.diag_indices(len(f))] = np.inf
    if groups is not None:
        d[groups[:, None] == groups[None, :]] = np.inf
    return float((truth[d.argmin(axis=1)] == truth).mean())


def tta_table(cfg: Config, splits: dict[str, tuple[list[Path], np.ndarray, np.ndarray | None]]) -> str:
    """One row per (scales, flip) of TTA: per split rank-1, identify's ARI and K; embedding time."""
    out = ["scales            flip   time   " + "  ".join(f"{s} rank-1  ARI   K/true" for s in splits)]
    plain = None
    for scales, flip in TTA:
        embedder = Embedder.from_checkpoint(cfg.checkpoint, workers=cfg.workers, scales=scales, flip=flip)
        started, cells = time.perf_counter(), []
        for paths, truth, groups in splits.values():
            f = embedder.embed(paths, progress=True, desc=f"scales {scales}, flip {flip}")
            s = clustering_scores(clustering.identify(f, groups, cfg.k1, cfg.k2)[0], truth)
            cells.append(f"{rank1(f, truth, groups):11.3f}  {s['ARI']:.2f}  {s['K']:3d}/{s['true_K']}")
        seconds = time.perf_counter() - started
        plain = plain or seconds
        out.append(f"{', '.join(map(str, scales)):17s} {'yes' if flip else 'no':5s} {seconds / plain:4.1f}x  "
                   + "   ".join(cells))
    return "\n".join(out)


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
    embedder = Embedder.from_checkpoint(cfg.checkpoint, workers=cfg.workers, scales=cfg.scales, flip=cfg.flip_tta)
    splits = {split: split_images(root, split) for split in ("test", "challenge")}
    rows = []
    for split, (paths, truth, groups) in splits.items():
        f = embedder.embed(paths, progress=True, desc=split)
        rows += [{"split": split, **row} for row in compare(f, truth, groups, cfg)]
    print(markdown(rows))
    if cfg.tta:
        print(tta_table(cfg, splits))
    if cfg.scale:
        print(end_to_end(cfg))


if __name__ == "__main__":
    run(main, Config)
