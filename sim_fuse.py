"""Stage 5: mean fusion of several distance matrices (docs/RERANKING.md §4).

    python sim_fuse.py --inputs=runs/a/challenge/dist_kr.npy,runs/b/challenge/dist_kr.npy

Inputs, outputs and the winning recipe's chain of fusions: README.md, stage 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from reid.config import format_config, run
from reid.fusion import fuse_files, mean_fuse
from reid.rules import Checked, NonNegative


@dataclass
class Config(Checked):
    inputs: tuple[Path, ...] = ()  # distance matrices to fuse: .npy (ids beside it) or official .csv
    weights: tuple[NonNegative, ...] = ()  # one weight per input; empty means equal weights
    out_dir: Path = Path("outputs/sim_fuse")  # gets dist.npy, query_ids.txt, gallery_ids.txt, dist.csv
    labels: Path | None = None  # CSV with columns img_id,player (e.g. a ground_truth.csv): prints mAP


def main(cfg: Config) -> None:
    print(format_config(cfg))
    fuse = partial(mean_fuse, weights=cfg.weights or None)
    for line in fuse_files(cfg.inputs, fuse, cfg.out_dir, cfg.labels):
        print(line)


if __name__ == "__main__":
    run(main, Config)
