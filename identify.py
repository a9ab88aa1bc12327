"""Stage 7: a folder of crops -> identities: which crops show the same player, no count given.

    python identify.py --images=crops/game_12 --checkpoints=checkpoints/a,checkpoints/b --out_dir=outputs/ident
    python identify.py --images=crops/game_12 --checkpoints=model.onnx --groups=crops/game_12/frames.csv

How the identities are found and what is written: README.md, stage 7; the test-time
augmentation measured: docs/IDENTIFY.md.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from reid.api import check_entry, entry_name, input_paths, open_embedder
from reid.clustering import frame_groups, identify
from reid.config import format_config, run
from reid.device import Amp, RankContext, amp_note, distributed
from reid.errors import ReidError
from reid.files import write_json
from reid.fusion import fuse_features
from reid.images import find_images, listed, unreadable
from reid.io import PROVENANCE, read_table, write_csv
from reid.layouts import parse_name
from reid.metrics import clustering_scores
from reid.outputs import claimed, folder_as_unit
from reid.rules import Checked, Count, PositiveInt, Range
from reid.runs import images_fingerprint
from reid.visualize import identity_sheet

Scale = Annotated[float, Range(lo=0.25, hi=4)]  # a test-time input size, as a multiple of the trained one


@dataclass
class Config(Checked):
    images: Path = Path("crops")  # a folder of crops (.jpg, .jpeg, .png; sub-folders included)
    checkpoints: tuple[Path, ...] = (  # run folders, .pt or .onnx files, or pretrained:<model>[@size]
        Path("checkpoints/eva02_l448"),)
    groups: Path | None = None  # CSV image,sequence,frame: crops of one frame are different people
    truth: Path | None = None  # CSV image,player: only to score the result
    out_dir: Path = Path("outputs/identify")  # identities.csv, identities.png, provenance.json
    batch_size: PositiveInt = 64  # images per forward pass
    num_workers: Count = 4  # image-decoding threads
    device: Literal["auto", "cuda", "cpu"] = "auto"  # auto: CUDA when available
    amp: Amp = "bf16"  # mixed precision on CUDA; CPU runs fp32
    scales: tuple[Scale, ...] = (1.0, 1.25)  # embed at these multiples of each model's input size, averaged
    flip_tta: bool = False  # also embed each crop mirrored (about twice the embedding time)
    k1: PositiveInt = 20  # re-ranking: k-reciprocal neighbours
    k2: PositiveInt = 6  # re-ranking: local query expansion
    skip_bad: bool = False  # leave out unreadable images (each named) instead of refusing them
    sheet_rows: PositiveInt = 24  # identities shown on identities.png


def list_crops(folder: Path) -> list[str]:
    """Image paths inside `folder` (relative, sorted); hidden files and folders are skipped."""
    if not folder.is_dir():
        raise ReidError(f"--images={folder}: " + ("a file, not a folder" if folder.exists() else "not a folder"))
    found = [str(p) for p in find_images(folder)]
    if not found:
        raise ReidError(f"--images={folder}: no .jpg, .jpeg or .png images in it")
    print(f"found {len(found)} images in {folder}")
    return found


def readable(folder: Path, names: list[str], skip_bad: bool) -> np.ndarray:
    """Which of `names` can be read; unreadable images are refused unless `skip_bad`."""
    bad = unreadable(folder / n for n in names)
    if len(bad) == len(names):
        raise ReidError(f"--images={folder}: no readable image ({listed(bad)})")
    if bad and not skip_bad:
        raise ReidError(f"{len(bad)} unreadable images in {folder}: {listed(bad)}; pass --skip_bad=true to "
                        "leave them out")
    if bad:
        print(f"skipping {len(bad)} unreadable images: {listed(bad)}")
    skipped = {path for path, _ in bad}
    return np.array([folder / n not in skipped for n in names])


def match_rows(table: pd.DataFrame, column: str, names: list[str], path: Path) -> np.ndarray:
    """The position in `names` of each row's image: a path inside --images, or one that ends in
    such a path (so a dataset's own CSV, its paths starting higher up, can be given as it is).
    A row naming no listed image is refused."""
    where = {name: i for i, name in enumerate(names)}
    out = np.full(len(table), -1, dtype=np.int64)
    for row, value in enumerate(table[column]):
        parts = Path(value).parts
        for start in range(len(parts)):
            hit = where.get(str(Path(*parts[start:])))
            if hit is not None:
                out[row] = hit
                break
    missing = table[column].to_numpy()[out < 0]
    if len(missing):
        raise ReidError(f"{path}: {len(missing)} images not found among the crops, e.g. {', '.join(missing[:3])}")
    return out


def read_keyed(path: Path, columns: dict[str, type], names: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV keyed by image (column `image`, or `img_id` as in the dataset's own CSVs)."""
    table = read_table(path, columns, {"image": str, "img_id": str})
    key = "image" if "image" in table.columns else "img_id"
    if key not in table.columns:
        raise ReidError(f"{path}: missing columns image (it has {', '.join(table.columns) or 'none'})")
    rows = match_rows(table, key, names, path)
    order = np.argsort(rows, kind="stable")
    twice = np.flatnonzero(rows[order][1:] == rows[order][:-1])
    if len(twice):
        first, again = order[twice[0]], order[twice[0] + 1]
        raise ReidError(f"{path}: rows {first + 2} and {again + 2} both name {names[rows[first]]}: "
                        "give each image once")
    return table, rows


def crop_groups(cfg: Config, names: list[str]) -> np.ndarray | None:
    """A group id per crop, equal for crops of one (sequence, frame), -1 where unknown; None
    without any frame information."""
    if cfg.groups is not None:
        table, rows = read_keyed(cfg.groups, {"sequence": int, "frame": int}, names)
        groups = np.full(len(names), -1, dtype=np.int64)
        groups[rows] = frame_groups(table["sequence"], table["frame"])
        if (groups < 0).any():
            print(f"{(groups < 0).sum()} crops are not in {cfg.groups}: no frame constraint on them")
        return groups
    parsed = official_names(names)
    if parsed is None:
        print("names are not {player}_{sequence}_{frame}.jpeg and no --groups: no frame constraints are used")
        return None
    folders = np.unique([str(Path(n).parent) for n in names], return_inverse=True)[1]  # each its own games
    return frame_groups(parsed[:, 1], parsed[:, 2], folders)


def official_names(names: list[str]) -> np.ndarray | None:
    """(player, sequence, frame) per crop when every file name has the official form, else None."""
    try:
        return np.array([parse_name(Path(n).name) for n in names], dtype=np.int64).reshape(-1, 3)
    except ReidError:
        return None


def true_players(cfg: Config, names: list[str]) -> np.ndarray | None:
    """Each crop's true player, for scoring only: from --truth, else from official names."""
    if cfg.truth is not None:
        table, rows = read_keyed(cfg.truth, {"player": int}, names)
        if len(np.unique(rows)) != len(names):
            raise ReidError(f"{cfg.truth}: gives a player for {len(np.unique(rows))} of the {len(names)} crops")
        truth = np.empty(len(names), dtype=np.int64)
        truth[rows] = table["player"].to_numpy()
        return truth
    parsed = official_names(names)
    return None if parsed is None else parsed[:, 0]


def embed_all(cfg: Config, paths: list[Path], ctx: RankContext) -> tuple[np.ndarray | None, list[dict[str, str]]]:
    """The fused features of every crop (None on all but the first process under torchrun, each
    of which embeds its share), and where each model's came from."""
    if note := amp_note(cfg.amp, ctx.device):
        ctx.say(note)
    features, sources = [], []
    for entry in cfg.checkpoints:
        embedder = open_embedder(entry, ctx.device, amp=cfg.amp, flip=cfg.flip_tta, scales=cfg.scales,
                                 own_size_if_refused=True, workers=cfg.num_workers)
        scales = embedder.used_scales()
        if scales != embedder.scales:
            ctx.say(f"{entry_name(entry)} takes {embedder.data_config.img_size}-pixel input only: its crops are "
                    "embedded at that size alone")
        features.append(embedder.embed_across_ranks(paths, ctx, batch_size=cfg.batch_size, progress=ctx.main,
                                                    desc=entry_name(entry)))
        sources.append({**embedder.source, "scales": list(scales), "flip": cfg.flip_tta})
    return (fuse_features(features) if ctx.main else None), sources


def main(cfg: Config) -> None:
    """Under torchrun each process embeds its share of the crops; the first does the rest."""
    with distributed(cfg.device) as ctx:
        group(cfg, ctx)


STAGE = "identify"


def inputs_of(cfg: Config) -> list[tuple[str, Path]]:
    """(option, path) of everything identify reads: its output folder must stay apart from them."""
    named = [("images", cfg.images), ("groups", cfg.groups), ("truth", cfg.truth)]
    return [(o, p) for o, p in named if p is not None] + [("checkpoints", p) for p in input_paths(cfg.checkpoints)]


def group(cfg: Config, ctx: RankContext) -> None:
    """Check the request, hold the output folder, then do the work."""
    ctx.say(format_config(cfg))
    if not cfg.checkpoints:
        raise ReidError("no checkpoints given: --checkpoints=run_folder[,run_folder...]")
    for entry in cfg.checkpoints:
        check_entry(entry, cfg.flip_tta)
    with claimed([cfg.out_dir], "out_dir", STAGE, inputs_of(cfg), hold=ctx.main):
        write_identities(cfg, ctx)


def write_identities(cfg: Config, ctx: RankContext) -> None:
    """List, check and embed the crops, cluster them, and write the output folder as one unit."""
    with contextlib.nullcontext() if ctx.main else contextlib.redirect_stdout(io.StringIO()):  # said once
        names = list_crops(cfg.images)
        groups, truth = crop_groups(cfg, names), true_players(cfg, names)
        keep = readable(cfg.images, names, cfg.skip_bad)
    names = [n for n, k in zip(names, keep, strict=True) if k]
    groups = None if groups is None else groups[keep]
    truth = None if truth is None else truth[keep]
    paths = [cfg.images / n for n in names]
    features, sources = embed_all(cfg, paths, ctx)
    if features is None:
        return
    started = time.perf_counter()
    labels, confidence = identify(features, groups, k1=cfg.k1, k2=cfg.k2)
    seconds = time.perf_counter() - started
    table = pd.DataFrame({"image": names, "identity": labels, "confidence": np.round(confidence, 4)})
    with folder_as_unit(cfg.out_dir, STAGE) as stage:
        write_csv(table, stage / "identities.csv")
        identity_sheet(stage / "identities.png", paths, labels, truth, max_rows=cfg.sheet_rows,
                       title=f"{cfg.images}: {labels.max() + 1} identities")
        write_json({"images": images_fingerprint(cfg.images, names), "sources": sources,
                    "frame_constraints": groups is not None}, stage / PROVENANCE)
    print(f"{len(names)} images -> {labels.max() + 1} identities (clustering {seconds:.1f} s); wrote {cfg.out_dir}")
    if truth is not None:
        s = clustering_scores(labels, truth)
        print(f"against the ground truth: ARI {s['ARI']:.3f}, NMI {s['NMI']:.3f}, "
              f"K {s['K']} for {s['true_K']} players")


if __name__ == "__main__":
    run(main, Config)
