"""Stage 5': consensus-weighted ("dissimilarity") fusion of distance matrices (docs/RERANKING.md §4).

    python dissim_fuse.py --inputs=runs/a/challenge/dist_kr.npy,runs/b/challenge/dist_kr.npy

The weighting rule: docs/RERANKING.md §4; inputs, outputs and the winning recipe: README.md, stage 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from reid.config import format_config, run
from reid.fusion import dissim_fuse, fuse_files
from reid.rules import Checked, PositiveInt


@dataclass
class Config(Checked):
    inputs: tuple[Path, ...] = ()  # distance matrices to fuse: .npy (ids beside it) or official .csv
    topk: PositiveInt = 15  # gallery images per model that vote for the consensus set
    min_votes: PositiveInt | None = None  # votes an image needs to be in the consensus; None: a majority
    out_dir: Path = Path("outputs/dissim_fuse")  # gets dist.npy, query_ids.txt, gallery_ids.txt, dist.csv
    labels: Path | None = None  # CSV with columns img_id,player (e.g. a ground_truth.csv): prints mAP


def main(cfg: Config) -> None:
    print(format_config(cfg))
    fuse = partial(dissim_fuse, topk=cfg.topk, min_votes=cfg.min_votes)
    for line in fuse_files(cfg.inputs, fuse, cfg.out_dir, cfg.labels):
        print(line)


if __name__ == "__main__":
    run(main, Config)
