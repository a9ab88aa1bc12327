"""Stage 2: scan the dataset and write the CSV partitions train_df.csv and challenge_df.csv.

    python preprocess_data.py [--data_dir=data] [--n_folds=10] [--layout=auto]
    python preprocess_data.py --layout=market1501   # junk pid -1 left out, distractors (pid 0) kept
    python preprocess_data.py --layout=folders      # queries: the first image by name of each player in each sequence

The layout under <data_dir>/data_reid/ is detected (and printed) unless --layout names it; each
layout's rules: README.md, "Your own data". Every layout gives the same train_df.csv.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reid.config import format_config, run
from reid.data import Folds, image_paths, with_folds
from reid.errors import ReidError
from reid.files import require_writable
from reid.images import require_images
from reid.io import write_csv
from reid.layouts import (
    build_challenge_df,
    detect_layout,
    scan_folders,
    scan_labelled,
    scan_market1501,
    unmatched_queries,
)
from reid.rules import Checked


@dataclass
class Config(Checked):
    data_dir: Path = Path("data")  # the dataset is <data_dir>/data_reid/; the CSVs land there
    n_folds: Folds = 10  # GroupKFold over games (players in the other layouts), capped at their number
    layout: Literal["auto", "official", "market1501", "folders"] = "auto"  # auto: detected from the folders


def main(cfg: Config) -> None:
    print(format_config(cfg))
    root = cfg.data_dir / "data_reid"
    if not root.is_dir():
        raise ReidError(f"missing dataset folder {root}: run download.py first")
    require_writable(root, "data_dir")
    layout = detect_layout(root) if cfg.layout == "auto" else cfg.layout
    print(f"layout    {layout}" + (" (detected)" if cfg.layout == "auto" else ""))
    players = None  # the folders layout's player numbers, written with the partitions
    if layout == "official":
        train_df = with_folds(scan_labelled(root), cfg.n_folds)
        challenge_df = build_challenge_df(root)  # both built, so a bad challenge name writes nothing
    elif layout == "market1501":
        scanned, junk = scan_market1501(root)
        train_df, challenge_df = with_folds(scanned, cfg.n_folds), None
        print(f"left out {junk} junk images (pid -1, and distractors among the training images)")
    else:
        scanned, players, said = scan_folders(root)
        train_df, challenge_df = with_folds(scanned, cfg.n_folds), None
        if said:
            print("\n".join(said))
    if unmatched := unmatched_queries(train_df):
        print(f"{unmatched} test queries have no possible match in the gallery: evaluation leaves them out")
    require_images(image_paths(root, train_df), "the training and test folders")
    if challenge_df is not None:
        require_images(image_paths(root, challenge_df), "the challenge folders")
    # Every check is behind us: only now is anything written.
    if players is not None:
        print(f"wrote {write_csv(players, root / 'players.csv')} (player numbers -> folder names)")
    write_csv(train_df, root / "train_df.csv")
    counts = train_df.groupby(["split", "img_type"]).size()
    for split in ("train", "test"):
        players = train_df.loc[train_df["split"] == split, "player"].nunique()
        print(f"{split:9s} players {players:5d}  queries {counts.get((split, 'q'), 0):6d}  "
              f"gallery {counts.get((split, 'g'), 0):6d}")
    n_folds = train_df["fold"].nunique()
    capped = f"; n_folds={cfg.n_folds} capped at the number of games" if n_folds < cfg.n_folds else ""
    print(f"folds     {n_folds} (grouped by game{capped})")
    print(f"wrote {root / 'train_df.csv'}")
    if challenge_df is None:
        stale = root / "challenge_df.csv"
        removed = f"; removed the stale {stale}" if stale.exists() else ""
        stale.unlink(missing_ok=True)
        print(f"warning: no {root / 'reid_challenge'}: no challenge split{removed}")
        return
    write_csv(challenge_df, root / "challenge_df.csv")
    kinds = challenge_df["img_type"].value_counts()
    print(f"challenge queries {kinds.get('q', 0):6d}  gallery {kinds.get('g', 0):6d}")
    print(f"wrote {root / 'challenge_df.csv'}")

if __name__ == "__main__":
    run(main, Config)
