"""Every layout of a dataset on disk, each read by its scanner into the same partition.

preprocess_data.py detects the layout under the data root and writes `train_df.csv` the same
way for each, so no later stage knows layouts:

- `official`: `reid_training/`, `reid_test/{query,gallery}/` and optionally
  `reid_challenge/{query,gallery}/` (the challenge partition, `challenge_df.csv`).
- `folders`: `train/<player>/<image>` and optionally `test/<player>/<image>`, with an optional
  level of sequence folders, `<split>/<player>/<sequence>/<image>`, or a `sequences.csv`
  (image,sequence,frame; image as `train/<player>/<file>`) beside them. Query roles: the first
  image (by name) of each player in each sequence, or of each player without sequences; a
  player with one image is a query of nothing (reported). Without `test/`, a fifth of the
  players is held out as the test split (GroupKFold over players). Player folders may have any
  name: players are numbered in name order and `players.csv` maps the numbers back.
- `market1501`: `bounding_box_train/`, `query/`, `bounding_box_test/`, names
  `{pid}_c{camera}s{sequence}_{frame}_{n}.jpg` (.jpeg and .png read alike; other files, such
  as the archive's Thumbs.db, are no images). As the Market-1501 protocol has it, junk
  images (pid -1) are left out, distractors (pid 0) stay in the test gallery as nobody's
  match, and the camera of each image is kept (column `camera`): evaluation then leaves out,
  for each query, the gallery images of its player taken by its camera.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from reid.data import CHALLENGE_COLUMNS, TRAIN_COLUMNS
from reid.errors import ReidError
from reid.images import SUFFIXES, find_images
from reid.io import read_table

# The official layout: `{player}_{sequence}_{frame}.jpeg` in the training and test folders (frame
# `00` is the query), `{id}.jpeg` in the challenge folders.
_LABELLED = re.compile(r"^(\d+)_(\d+)_(\d+)\.jpe?g$", re.IGNORECASE)
_ANONYMOUS = re.compile(r"^(\d+)\.jpe?g$", re.IGNORECASE)
# (folder under the data root, split, image type or None when the frame number decides)
LABELLED_FOLDERS = [
    ("reid_training", "train", None),
    ("reid_test/query", "test", "q"),
    ("reid_test/gallery", "test", "g"),
]
CHALLENGE_FOLDERS = [("reid_challenge/query", "q"), ("reid_challenge/gallery", "g")]
MARKET_FOLDERS = [("bounding_box_train", "train"), ("query", "test"), ("bounding_box_test", "test")]
_MARKET = re.compile(r"^(-?\d+)_c(\d+)s(\d+)_(\d+)_(\d+)\.(?:jpe?g|png)$", re.IGNORECASE)
JUNK, DISTRACTOR = -1, 0
Layout = Literal["official", "folders", "market1501"]  # the layouts a dataset root may have on disk
LAYOUTS: dict[Layout, str] = {"official": LABELLED_FOLDERS[0][0], "market1501": MARKET_FOLDERS[0][0],
                             "folders": "train"}
HELD_OUT = 5  # without test/, one player in this many is held out for testing
SEQUENCES = "sequences.csv"  # folders layout: image,sequence,frame, where sequence folders are not used


def detect_layout(root: Path) -> str:
    """The layout of the data under `root`, from the folders it has; refused when it has none
    or the folders of two layouts."""
    found = [name for name, marker in LAYOUTS.items() if (root / marker).is_dir()]
    if len(found) > 1:
        raise ReidError(f"{root} mixes layouts ({', '.join(found)}): keep one dataset per data root")
    if not found:
        expected = "; ".join(f"{name}: {root / marker}/" for name, marker in LAYOUTS.items())
        raise ReidError(f"{root} matches no layout; expected one of {expected}")
    return found[0]


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


def parse_market_name(folder: Path, name: str) -> tuple[int, int, int]:
    """(pid, camera, sequence) of a Market-1501 file name; a name of another form is named."""
    match = _MARKET.match(name)
    if not match:
        raise ReidError(f"{folder / name}: not a Market-1501 name {{pid}}_c{{camera}}s{{sequence}}_{{frame}}_{{n}}.jpg")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def scan_market1501(root: Path) -> tuple[pd.DataFrame, int]:
    """Rows of `train_df.csv` (without folds, with `camera`) for a Market-1501 layout, and the
    number of junk images left out. Training images are all gallery-role but the first of each
    player (folds over players then have queries); `game` holds the player, so GroupKFold keeps
    a player in one fold. A folder with nothing but junk is refused: no split can go without
    players."""
    rows, junk = [], 0
    for folder, split in MARKET_FOLDERS:
        # Only images: the published archive also holds a Windows Thumbs.db in its folders.
        names = [n for n in list_images(root / folder) if n.lower().endswith(SUFFIXES)]
        if not names:
            raise ReidError(f"no .jpg, .jpeg or .png images in {root / folder}")
        kept = len(rows)
        for name in names:
            pid, camera, _ = parse_market_name(root / folder, name)
            if pid == JUNK or (split == "train" and pid == DISTRACTOR):
                junk += 1
                continue
            img_type = "q" if folder == "query" else "g"
            rows.append((name, folder, pid, pid, split, img_type, camera))
        if len(rows) == kept:
            left_out = "junk (pid -1) or distractors (pid 0)" if split == "train" else "junk (pid -1)"
            raise ReidError(f"{root / folder}: all {len(names)} images are {left_out}, which the Market-1501 "
                            "protocol leaves out: no player is left in it")
    df = pd.DataFrame(rows, columns=[*list(TRAIN_COLUMNS)[:-1], "camera"])
    train = df["split"] == "train"
    first = ~df[train].duplicated("player")
    df.loc[first[first].index, "img_type"] = "q"
    return df, junk


def unmatched_queries(df: pd.DataFrame) -> int:
    """Test queries with no gallery image of their player (from another camera, where cameras
    are known): no possible match, so evaluation leaves them out."""
    test = df[df["split"] == "test"]
    q, g = test[test["img_type"] == "q"], test[test["img_type"] == "g"]
    if "camera" not in df.columns:
        return int((~q["player"].isin(g["player"])).sum())
    pairs = q.reset_index().merge(g[["player", "camera"]], on="player", suffixes=("", "_g"))
    return len(q) - pairs.loc[pairs["camera"] != pairs["camera_g"], "index"].nunique()


def _player_images(split_dir: Path) -> list[tuple[str, str, str]]:
    """(player folder, sequence folder or "", file name) of every image of one split."""
    found = []
    for relative in find_images(split_dir):
        parts, path = relative.parts, split_dir / relative
        if len(parts) not in (2, 3):
            raise ReidError(f"{path}: expected {split_dir}/<player>/<image> or {split_dir}/<player>/<sequence>/<image>")
        found.append((parts[0], parts[1] if len(parts) == 3 else "", parts[-1]))
    if not found:
        raise ReidError(f"{split_dir}: no player folders with images (.jpg, .jpeg, .png) in it")
    return found


def roles(df: pd.DataFrame) -> tuple[pd.Series, int]:
    """img_type per row: `q` for the first image of each (player, sequence), `g` for the rest;
    a player with a single image has no match, so it is no query (their count is returned)."""
    first = ~df.duplicated(["player", "sequence"])
    alone = df.groupby("player")["player"].transform("size") == 1
    return pd.Series(np.where(first & ~alone, "q", "g"), index=df.index), int(alone.sum())


def listed_sequences(path: Path, images: list[str]) -> list[str]:
    """The sequence of each image (a path below the data root) from a sequences.csv that must
    list every one of them."""
    table = read_table(path, {"image": str, "sequence": int, "frame": int}, keys=["image"])
    sequence = dict(zip(table["image"], table["sequence"].astype(str), strict=True))
    missing = [i for i in images if i not in sequence]
    if missing:
        raise ReidError(f"{path}: no sequence for {len(missing)} images, e.g. {', '.join(missing[:3])}")
    return [sequence[i] for i in images]


def scan_folders(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Rows of `train_df.csv` (without folds; `game` holds the player, so folds keep a player
    together) for the folders layout, the player-number table, and what the caller should say
    about the choices made."""
    from sklearn.model_selection import GroupKFold

    splits = {"train": _player_images(root / "train")}
    if (root / "test").is_dir():
        splits["test"] = _player_images(root / "test")
    names = sorted({player for found in splits.values() for player, _, _ in found})
    number = {name: i for i, name in enumerate(names)}
    rows = [(image, f"{split}/{player}" + (f"/{seq}" if seq else ""), number[player], number[player], split, seq)
            for split, found in splits.items() for player, seq, image in found]
    df = pd.DataFrame(rows, columns=["img_id", "folder", "player", "game", "split", "sequence"])
    if (root / SEQUENCES).is_file():
        df["sequence"] = listed_sequences(root / SEQUENCES, (df["folder"] + "/" + df["img_id"]).tolist())
    said = []
    if "test" not in splits:
        players = df["player"].nunique()
        if players < HELD_OUT:
            raise ReidError(f"{root}: no test/ folder and {players} players: need {HELD_OUT} to hold some out")
        _, held = next(GroupKFold(n_splits=HELD_OUT).split(df, groups=df["player"]))
        df.loc[held, "split"] = "test"
        said.append(f"no {root / 'test'}: held out {df.loc[held, 'player'].nunique()} of {players} players as the "
                    "test split (GroupKFold over players)")
    parts = [roles(part) for _, part in df.groupby("split")]
    df["img_type"] = pd.concat([types for types, _ in parts])
    if alone := sum(n for _, n in parts):
        said.append(f"{alone} players have a single image: no query is made of them")
    return df.drop(columns="sequence"), pd.DataFrame({"player": range(len(names)), "name": names}), said
