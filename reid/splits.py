"""The evaluation splits: the queries and gallery of `test` or `challenge`, as predict.py scores them.

`test` comes from `train_df.csv` (labelled); `challenge` from `challenge_df.csv`, with labels
only where a `ground_truth.csv` lies beside it (synthetic data has one, the official data none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reid.data import CHALLENGE_COLUMNS, OPTIONAL_COLUMNS, load_partition
from reid.errors import ReidError
from reid.io import read_table


@dataclass
class SplitImages:
    """The queries and gallery of one split as predict.py scores them.

    `df` lists queries first, then the gallery, with `img_id` relative to the data root,
    `id` the integer id the matrices and submission use, and `player` the label, or -1; and
    `camera` where the layout records cameras.
    """

    name: str
    df: pd.DataFrame
    labelled: bool

    @property
    def query(self) -> pd.DataFrame:
        return self.df[self.df["img_type"] == "q"]

    @property
    def gallery(self) -> pd.DataFrame:
        return self.df[self.df["img_type"] == "g"]

    @property
    def cameras(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(query cameras, gallery cameras) for camera-aware evaluation, or (None, None)."""
        if "camera" not in self.df.columns:
            return None, None
        return self.query["camera"].to_numpy(), self.gallery["camera"].to_numpy()


GROUND_TRUTH = "reid_challenge/ground_truth.csv"


def load_split(root: Path, split: str) -> SplitImages:
    """`test` (labelled; ids are positions, queries first) or `challenge` (anonymous ids, and
    labels only where a `ground_truth.csv` exists, as for synthetic data)."""
    if split == "test":
        df = load_partition(root / "train_df.csv")
        df = df[df["split"] == "test"].sort_values(["img_type", "folder", "img_id"], ascending=[False, True, True])
        df = pd.DataFrame({"img_id": df["folder"] + "/" + df["img_id"], "img_type": df["img_type"],
                           "player": df["player"], **{c: df[c] for c in OPTIONAL_COLUMNS if c in df.columns}})
        return SplitImages(split, df.assign(id=np.arange(len(df))).reset_index(drop=True), True)
    if split == "challenge":
        path = root / "challenge_df.csv"
        df = load_partition(path, CHALLENGE_COLUMNS, keys=["img_id", "player"]).rename(columns={"player": "id"})
        truth = root / GROUND_TRUTH
        if not truth.is_file():
            return SplitImages(split, df.assign(player=-1), False)
        labels = read_table(truth, {"img_id": str, "player": int}, keys=["img_id"])[["img_id", "player"]]
        df = df.merge(labels, on="img_id", how="left", validate="one_to_one")
        if df["player"].isna().any():
            missing = df.loc[df["player"].isna(), "img_id"]
            raise ReidError(f"{truth}: no player for {len(missing)} images, e.g. {missing.iloc[0]}")
        return SplitImages(split, df.astype({"player": int}), True)
    raise ReidError(f"unknown split {split!r}: use test or challenge")
