"""The training data: the CSV partitions and their folds, the pair dataset and the unique-player
batch sampler.

The partitions are what every layout's scanner (reid.layouts) turns a dataset into; the
evaluation splits (reid.splits) and the Ctrl-C-safe loader (reid.loader) are read from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from reid.errors import ReidError
from reid.images import read_image
from reid.io import read_table
from reid.rules import Count, Probability, Range, checked

TRAIN_COLUMNS = {"img_id": str, "folder": str, "player": int, "game": int, "split": str, "img_type": str, "fold": int}
CHALLENGE_COLUMNS = {"img_id": str, "player": int, "img_type": str}
OPTIONAL_COLUMNS = {"camera": int}  # where the layout knows each image's camera (Market-1501)


Folds = Annotated[int, Range(lo=2)]  # GroupKFold needs two folds at least
Fold = Annotated[int, Range(lo=-1)]  # a fold of the partition; -1: train on split train, validate on test


@checked
def assign_folds(df: pd.DataFrame, n_folds: Folds) -> pd.DataFrame:
    """Add `fold` by GroupKFold over games, so no game is split between training and validation.

    Games are keyed by split and sequence number; with fewer games than `n_folds` the number
    of folds drops to the number of games (the caller reports it).
    """
    from sklearn.model_selection import GroupKFold

    groups = df["split"] + "/" + df["game"].astype(str)
    n_groups = groups.nunique()
    if n_groups < 2:
        found = "no image was scanned" if df.empty else f"all {len(df)} images are of one game ({groups.iloc[0]})"
        raise ReidError(f"cannot make folds: {found}; folds need images of at least 2 games (2 players in the "
                        "market1501 and folders layouts)")
    n_folds = min(n_folds, n_groups)
    folds = np.empty(len(df), dtype=int)
    for fold, (_, val) in enumerate(GroupKFold(n_splits=n_folds).split(df, groups=groups)):
        folds[val] = fold
    return df.assign(fold=folds)


@checked
def with_folds(df: pd.DataFrame, n_folds: Folds) -> pd.DataFrame:
    """The `train_df.csv` partition from scanned rows of any layout: sorted, with folds."""
    df = df.sort_values(["split", "folder", "img_id"], kind="stable").reset_index(drop=True)
    columns = list(TRAIN_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in df.columns]
    return assign_folds(df, n_folds)[columns]


def load_partition(path: Path, columns: dict[str, type] = TRAIN_COLUMNS,
                   keys: Sequence[str | tuple[str, ...]] = (("folder", "img_id"),)) -> pd.DataFrame:
    """Read a partition CSV written by preprocess_data.py, checking its columns, values and that
    each image (and each of `keys`) is listed once."""
    if not Path(path).is_file():
        raise ReidError(f"missing {path}: run preprocess_data.py first")
    df = read_table(path, columns, OPTIONAL_COLUMNS, keys)
    if df.empty:
        raise ReidError(f"{path}: no rows; run preprocess_data.py again")
    bad = ~df["img_type"].isin(["q", "g"])
    if "split" in df.columns:
        bad |= ~df["split"].isin(["train", "test"])
    if bad.any():
        row = df[bad].iloc[0]
        raise ReidError(f"{path}: row {int(bad.to_numpy().argmax()) + 2} has img_type {row['img_type']!r}"
                        + (f", split {row['split']!r}" if "split" in df.columns else "")
                        + " (allowed: img_type q or g; split train or test)")
    return df


def image_paths(root: Path, df: pd.DataFrame) -> list[Path]:
    """Absolute image paths of a partition (with or without a `folder` column)."""
    if "folder" in df.columns:
        return [root / f / i for f, i in zip(df["folder"], df["img_id"], strict=True)]
    return [root / i for i in df["img_id"]]


def identities(df: pd.DataFrame) -> np.ndarray:
    """A dense id per player, keyed by split too, so equal numbers in two splits stay apart."""
    keys = ["split", "player"] if "split" in df.columns else ["player"]
    return df.groupby(keys, sort=True).ngroup().to_numpy()


@checked
def split_fold(df: pd.DataFrame, fold: Fold) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation) rows: fold -1 trains on split train and validates on split test."""
    if fold == -1:
        train, val = df[df["split"] == "train"], df[df["split"] == "test"]
    else:
        if fold not in set(df["fold"]):
            raise ReidError(f"fold={fold} not in the partition (folds {sorted(set(df['fold']))})")
        train, val = df[df["fold"] != fold], df[df["fold"] == fold]
    if train.empty or val.empty:
        raise ReidError(f"fold={fold} leaves an empty training or validation set")
    return train.reset_index(drop=True), val.reset_index(drop=True)


class PairDataset(Dataset):
    """(image, other image of the same player, player index): one positive pair for InfoNCE.

    Indexed by `(index, seed)` as the sampler yields them: the seed fixes the partner, the
    paired flip and every augmentation, so an epoch is the same with any number of workers
    and after a resume.
    """

    @checked
    def __init__(self, root: Path, df: pd.DataFrame, transform, flip_p: Probability = 0.5):
        self.paths = image_paths(root, df)
        self.labels = identities(df)
        order = np.argsort(self.labels, kind="stable")
        starts = np.searchsorted(self.labels[order], np.arange(self.labels.max() + 1))
        self._members = np.split(order, starts[1:])
        self.transform = transform
        self.flip_p = flip_p

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self._members)

    @checked
    def partner(self, index: Count, rng: np.random.Generator) -> int:
        """A random other image of the same player (the image itself if it is alone)."""
        members = self._members[self.labels[index]]
        others = members[members != index]
        return int(rng.choice(others)) if len(others) else index

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        index, seed = key
        rng = np.random.default_rng(seed)
        other = self.partner(index, rng)
        flip = rng.random() < self.flip_p
        self.transform.set_random_seed(int(rng.integers(2**31)))
        images = []
        for i in (index, other):
            img = read_image(self.paths[i])
            if flip:
                img = np.ascontiguousarray(img[:, ::-1])
            images.append(self.transform(image=img)["image"])
        return images[0], images[1], int(self.labels[index])


@dataclass
class UniquePlayerBatchSampler(Sampler):
    """Batches in which no player appears twice, sliced across distributed ranks.

    Each epoch builds one plan of global batches (`batch_size * world_size` distinct players)
    from (seed, epoch) alone, so every rank computes the same plan and takes its own slice.
    Players are drawn with probability proportional to their unused images, which drains
    large and small players evenly; each image is an anchor at most once per epoch, and the
    few images left when fewer players than a batch remain wait for the next epoch.
    Yields lists of `(image index, item seed)`.
    """

    labels: np.ndarray
    batch_size: int
    seed: int = 0
    world_size: int = 1
    rank: int = 0
    epoch: int = 0

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        players = len(np.unique(self.labels))
        if self.batch_size * self.world_size > players:
            raise ReidError(
                f"a global batch of {self.batch_size} x {self.world_size} ranks needs that many "
                f"distinct players; the training set has {players}: lower batch_size"
            )
        if not 0 <= self.rank < self.world_size:
            raise ReidError(f"rank {self.rank} outside world size {self.world_size}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def plan(self, epoch: int) -> np.ndarray:
        """(n_batches, global batch, 2) array of (index, item seed), same on every rank."""
        return _plan(self.labels.tobytes(), self.labels.dtype.str, self.batch_size * self.world_size,
                     self.seed, epoch)

    def __len__(self) -> int:
        return len(self.plan(self.epoch))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        for batch in self.plan(self.epoch):
            yield [(int(i), int(s)) for i, s in batch[lo:hi]]


@lru_cache(maxsize=4)
def _plan(labels_bytes: bytes, dtype: str, global_batch: int, seed: int, epoch: int) -> np.ndarray:
    labels = np.frombuffer(labels_bytes, dtype=dtype)
    rng = np.random.default_rng([seed, epoch])
    players, player_of = np.unique(labels, return_inverse=True)
    # images grouped by player, shuffled within each player
    order = np.lexsort((rng.random(len(labels)), player_of))
    counts = np.bincount(player_of, minlength=len(players))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    remaining = counts.copy()
    batches = []
    while np.count_nonzero(remaining) >= global_batch:
        chosen = rng.choice(len(players), size=global_batch, replace=False,
                            p=remaining / remaining.sum())
        picked = order[starts[chosen] + counts[chosen] - remaining[chosen]]
        remaining[chosen] -= 1
        seeds = rng.integers(2**31, size=global_batch)
        batches.append(np.stack([picked, seeds], axis=1))
    return np.array(batches, dtype=np.int64).reshape(-1, global_batch, 2)
