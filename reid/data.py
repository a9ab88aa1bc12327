"""File names, CSV partitions, datasets and the unique-player batch sampler.

Names follow the official layout: `{player}_{sequence}_{frame}.jpeg` in the training and
test folders (frame `00` is the query), `{id}.jpeg` in the challenge folders.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from reid.errors import ReidError
from reid.images import read_image
from reid.io import read_table

IMAGE_SUFFIXES = (".jpeg", ".jpg")
_LABELLED = re.compile(r"^(\d+)_(\d+)_(\d+)\.jpe?g$", re.IGNORECASE)
_ANONYMOUS = re.compile(r"^(\d+)\.jpe?g$", re.IGNORECASE)

TRAIN_COLUMNS = {"img_id": str, "folder": str, "player": int, "game": int, "split": str, "img_type": str, "fold": int}
CHALLENGE_COLUMNS = {"img_id": str, "player": int, "img_type": str}
OPTIONAL_COLUMNS = {"camera": int}  # where the layout knows each image's camera (Market-1501)

# (folder under the data root, split, image type or None when the frame number decides)
LABELLED_FOLDERS = [
    ("reid_training", "train", None),
    ("reid_test/query", "test", "q"),
    ("reid_test/gallery", "test", "g"),
]
CHALLENGE_FOLDERS = [("reid_challenge/query", "q"), ("reid_challenge/gallery", "g")]


class ParsedName(NamedTuple):
    player: int
    sequence: int
    frame: int


def parse_name(name: str) -> ParsedName:
    """Split `{player}_{sequence}_{frame}.jpeg` into its three numbers."""
    match = _LABELLED.match(name)
    if not match:
        raise ReidError(f"{name!r} does not follow {{player}}_{{sequence}}_{{frame}}.jpeg")
    return ParsedName(*map(int, match.groups()))


def parse_challenge_name(name: str) -> int:
    """The anonymous integer id of a challenge image `{id}.jpeg`."""
    match = _ANONYMOUS.match(name)
    if not match:
        raise ReidError(f"{name!r} does not follow {{id}}.jpeg")
    return int(match.group(1))


def _ignore_sigint(_: int) -> None:
    """In a loader worker: leave Ctrl-C to the main process, which stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Hold a Ctrl-C until the block ends, then raise it; a second one is raised at once.

    Python swallows a KeyboardInterrupt raised in an at-fork hook or a finaliser, where torch
    starts and stops loader workers, and the run would go on; one raised while a batch is
    handed over leaves a worker printing a traceback. Outside the main thread, or where a
    program installed its own Ctrl-C handler, the block runs as it is.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    pressed = False

    def hold(signum: int, frame: Any) -> None:
        nonlocal pressed
        if pressed:
            raise KeyboardInterrupt
        pressed = True

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if pressed:
            raise KeyboardInterrupt


_END = object()


class _Loader(DataLoader):
    """A DataLoader whose workers start, hand over each batch and stop with Ctrl-C held."""

    def __iter__(self) -> Iterator[Any]:
        batches = None
        try:
            with ctrl_c_held():
                batches = super().__iter__()
            while True:
                with ctrl_c_held():
                    batch = next(batches, _END)
                if batch is _END:
                    return
                yield batch
        finally:
            with ctrl_c_held():
                batches = None  # the workers stop here, not later in a finaliser


def make_loader(dataset: Dataset, **kwargs: Any) -> DataLoader:
    """A DataLoader whose workers ignore Ctrl-C and whose main process never loses one, so an
    interrupted run ends with one line. Run an iterator to its end or close it: one left to
    the garbage collector stops its workers in a finaliser, where a Ctrl-C is lost."""
    return _Loader(dataset, worker_init_fn=_ignore_sigint, **kwargs)


def list_images(folder: Path) -> list[str]:
    """File names in `folder`, sorted; hidden files are skipped, anything else is kept, broken
    links too (the image check names them, where skipping them would lose images unsaid)."""
    if not folder.is_dir():
        raise ReidError(f"missing folder {folder}")
    return sorted(p.name for p in folder.iterdir()
                  if (p.is_file() or (p.is_symlink() and not p.exists())) and not p.name.startswith("."))


def _malformed(folder: Path, names: list[str], pattern: re.Pattern, form: str) -> str | None:
    bad = [n for n in names if not pattern.match(n)]
    if not bad:
        return None
    shown = ", ".join(bad[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    return f"{folder}: {len(bad)} file names do not follow {form}: {shown}{more}"


def scan_labelled(root: Path) -> pd.DataFrame:
    """One row per training and test image, without folds; bad names are one error listing them."""
    rows, problems = [], []
    for folder, split, img_type in LABELLED_FOLDERS:
        names = list_images(root / folder)
        if not names:
            raise ReidError(f"empty folder {root / folder}")
        problem = _malformed(root / folder, names, _LABELLED, "{player}_{sequence}_{frame}.jpeg")
        if problem:
            problems.append(problem)
            continue
        for name in names:
            player, sequence, frame = parse_name(name)
            kind = img_type or ("q" if frame == 0 else "g")
            rows.append((name, folder, player, sequence, split, kind))
    if problems:
        raise ReidError("\n".join(problems))
    return pd.DataFrame(rows, columns=list(TRAIN_COLUMNS)[:-1])


def assign_folds(df: pd.DataFrame, n_folds: int) -> pd.DataFrame:
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


def with_folds(df: pd.DataFrame, n_folds: int) -> pd.DataFrame:
    """The `train_df.csv` partition from scanned rows of any layout: sorted, with folds."""
    df = df.sort_values(["split", "folder", "img_id"], kind="stable").reset_index(drop=True)
    columns = list(TRAIN_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in df.columns]
    return assign_folds(df, n_folds)[columns]


def build_train_df(root: Path, n_folds: int) -> pd.DataFrame:
    """The `train_df.csv` partition of the official layout."""
    return with_folds(scan_labelled(root), n_folds)


def build_challenge_df(root: Path) -> pd.DataFrame | None:
    """The `challenge_df.csv` partition, or None when the data have no challenge split.

    The challenge has no labels: `player` holds each image's anonymous id, which is the id
    the submission uses; `img_id` is the path relative to the data root.
    """
    if not (root / "reid_challenge").is_dir():
        return None
    rows, problems = [], []
    for folder, img_type in CHALLENGE_FOLDERS:
        names = list_images(root / folder)
        if not names:
            raise ReidError(f"empty folder {root / folder}: a challenge split needs queries and a gallery "
                            f"(remove {root / 'reid_challenge'} to go without one)")
        problem = _malformed(root / folder, names, _ANONYMOUS, "{id}.jpeg")
        if problem:
            problems.append(problem)
            continue
        rows += [(f"{folder}/{n}", parse_challenge_name(n), img_type) for n in names]
    if problems:
        raise ReidError("\n".join(problems))
    df = pd.DataFrame(rows, columns=list(CHALLENGE_COLUMNS))
    return df.sort_values(["img_type", "player"], ascending=[False, True]).reset_index(drop=True)


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


def split_fold(df: pd.DataFrame, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
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

    def __init__(self, root: Path, df: pd.DataFrame, transform, flip_p: float = 0.5):
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

    def partner(self, index: int, rng: np.random.Generator) -> int:
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
