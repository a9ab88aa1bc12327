"""Stage 4: features -> distance matrices (plain, k-reciprocal, hard-weight) and submission CSVs.

    python predict.py --checkpoints=checkpoints/eva02_l448
    python predict.py --checkpoints=checkpoints/a,checkpoints/b --visualize=true
    python predict.py --checkpoints=pretrained:efficientnet_lite0   # untrained ImageNet features
    python predict.py --checkpoints=model.onnx                      # an exported model (export.py)

What it writes, per checkpoint and split, and under torchrun: README.md, stage 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from reid.api import check_entry, entry_name, input_paths, open_embedder
from reid.config import format_config, run
from reid.device import Amp, RankContext, amp_note, distributed
from reid.errors import ReidError
from reid.files import require_writable, write_json
from reid.fusion import mean_fuse
from reid.images import require_images
from reid.io import PROVENANCE, write_csv, write_outputs
from reid.metrics import evaluate, scorable
from reid.outputs import claimed, folder_as_unit, refuse_overlap
from reid.rerank import KINDS, RerankInput, distance_matrices
from reid.rules import Checked, Count, Items, PositiveInt, Probability
from reid.runs import images_fingerprint
from reid.splits import SplitImages, load_split
from reid.visualize import ranked_sheet

Splits = Annotated[tuple[Literal["test", "challenge"], ...], Items(distinct=True)]


@dataclass
class Config(Checked):
    checkpoints: tuple[Path, ...] = (  # run folders (their best.pt), .pt or .onnx files, or pretrained:<model>[@size]
        Path("checkpoints/eva02_l448"),)
    data_dir: Path = Path("data")  # dataset root: <data_dir>/data_reid/ with the CSV partitions
    splits: Splits = ("test", "challenge")  # test (labelled) and/or challenge
    batch_size: PositiveInt = 64  # images per forward pass
    num_workers: Count = 4  # image-decoding threads
    device: Literal["auto", "cuda", "cpu"] = "auto"  # auto: CUDA when available
    amp: Amp = "bf16"  # mixed precision on CUDA; CPU runs fp32
    k1: PositiveInt = 20  # re-ranking: k-reciprocal neighbours
    k2: PositiveInt = 6  # re-ranking: local query expansion
    lambda_value: Probability = 0.3  # re-ranking: weight of the original distance
    # Both re-rankings take squared Euclidean distances in the winning entry; the k-reciprocal
    # port squares its input itself, so it is meant for plain Euclidean ones.
    rerank_input: RerankInput = "squared"  # distances fed to the re-rankings
    flip_tta: bool = False  # add the features of the mirrored image (the winning entry: off)
    out_dir: Path = Path("outputs")  # one folder per run and split
    visualize: bool = False  # write ranked.png: the first queries with their top-10
    visualize_queries: PositiveInt = 8  # queries on the sheet


MEAN = "mean"  # the output folder of the mean of several checkpoints' matrices


def check_entries(entries: tuple[Path, ...], flip: bool) -> None:
    """Before any work: every entry must exist or be a well-formed pretrained model that takes
    these options, and no two may write into one output folder (nor into `mean`)."""
    names = [check_entry(e, flip) for e in entries]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ReidError(f"--checkpoints: {entries[names.index(name)]} and {entries[i]} would both write "
                            f"{name}/; copy or rename one run folder")
        if name == MEAN and len(entries) > 1:
            raise ReidError(f"--checkpoints: {entries[i]} would write {MEAN}/, where the mean of all goes; "
                            "rename its run folder")


def write_split(folder: Path, mats: dict[str, np.ndarray], split: SplitImages, root: Path,
                sources: list[dict[str, str]]) -> None:
    """The matrices, their labels where known, and provenance.json: the checkpoints and the
    fingerprint of the images they were computed on."""
    ids_q, ids_g = split.query["id"].to_numpy(), split.gallery["id"].to_numpy()
    for name, mat in mats.items():
        write_outputs(folder, mat, ids_q, ids_g, name)
    write_json({"split": split.name, "images": images_fingerprint(root, split.df["img_id"]),
                "sources": sources}, folder / PROVENANCE)
    if split.labelled:
        labels = split.df[["id", "player", "img_id"]].rename(columns={"id": "img_id", "img_id": "path"})
        write_csv(labels, folder / "labels.csv")


def scores(mats: dict[str, np.ndarray], split: SplitImages) -> list[tuple[str, dict]]:
    """Each matrix's scores, with how many of the queries they are over (those with a match)."""
    q, g = split.query["player"].to_numpy(), split.gallery["player"].to_numpy()
    counted = f"{scorable(q, g, *split.cameras).sum()}/{len(q)}"
    return [(KINDS[name], evaluate(mat, q, g, *split.cameras) | {"queries": counted}) for name, mat in mats.items()]


def main(cfg: Config) -> None:
    """Under torchrun each process embeds its share of every split, and the first one computes
    and writes everything from the gathered features; alone, one process does it all."""
    with distributed(cfg.device) as ctx:
        predict(cfg, ctx)


STAGE = "predict"


def load_splits(cfg: Config, ctx: RankContext) -> list[SplitImages]:
    """The splits asked for, each once, with readable images and, where labelled, a query that
    can be scored; refused before any model loads."""
    root = cfg.data_dir / "data_reid"
    splits = []
    for name in cfg.splits:
        if name == "challenge" and not (root / "challenge_df.csv").is_file():
            if len(cfg.splits) == 1:
                raise ReidError(f"--splits=challenge but there is no {root / 'challenge_df.csv'} "
                                "(preprocess_data.py writes it where the data has a challenge split)")
            ctx.say(f"warning: no {root / 'challenge_df.csv'}: skipping the challenge split")
            continue
        split = load_split(root, name)
        if split.labelled and not scorable(split.query["player"], split.gallery["player"], *split.cameras).any():
            raise ReidError(f"the {name} split: no query has a matching gallery image"
                            + (" taken by another camera" if split.cameras[0] is not None else "")
                            + ", so nothing could be scored")
        require_images([root / p for p in split.df["img_id"]], f"the {name} split")
        splits.append(split)
    return splits


def output_folders(cfg: Config, splits: list[SplitImages]) -> list[Path]:
    """Every folder this run replaces: `<run>/<split>` per checkpoint, and `mean/<split>`."""
    runs = [entry_name(e) for e in cfg.checkpoints] + ([MEAN] if len(cfg.checkpoints) > 1 else [])
    return [cfg.out_dir / run_name / split.name for run_name in runs for split in splits]


def predict(cfg: Config, ctx: RankContext) -> None:
    ctx.say(format_config(cfg))
    if not cfg.checkpoints:
        raise ReidError("no checkpoints given: --checkpoints=run_folder[,run_folder...]")
    check_entries(cfg.checkpoints, cfg.flip_tta)
    root = cfg.data_dir / "data_reid"
    inputs = [("data_dir", root)] + [("checkpoints", p) for p in input_paths(cfg.checkpoints)]
    refuse_overlap(cfg.out_dir, "out_dir", inputs)
    require_writable(cfg.out_dir, "out_dir")
    splits = load_splits(cfg, ctx)
    with claimed(output_folders(cfg, splits), "out_dir", STAGE, inputs, hold=ctx.main):
        predict_splits(cfg, ctx, splits)


def predict_splits(cfg: Config, ctx: RankContext, splits: list[SplitImages]) -> None:
    """Embed every split with every checkpoint; the first process writes and scores."""
    root = cfg.data_dir / "data_reid"
    table: list[tuple[str, str, str, dict]] = []
    per_split: dict[str, list[dict[str, np.ndarray]]] = {s.name: [] for s in splits}
    sources: list[dict[str, str]] = []
    if note := amp_note(cfg.amp, ctx.device):
        ctx.say(note)
    for entry in cfg.checkpoints:
        embedder = open_embedder(entry, ctx.device, amp=cfg.amp, flip=cfg.flip_tta, workers=cfg.num_workers)
        run_name = entry_name(entry)
        sources.append(embedder.source)
        for split in splits:
            feats = embedder.embed_across_ranks([root / p for p in split.df["img_id"]], ctx, batch_size=cfg.batch_size,
                                                progress=ctx.main, desc=f"{run_name} {split.name}")
            if feats is None:
                continue
            is_q = (split.df["img_type"] == "q").to_numpy()
            mats = distance_matrices(feats[is_q], feats[~is_q], cfg.k1, cfg.k2, cfg.lambda_value,
                                     cfg.rerank_input)
            per_split[split.name].append(mats)
            folder = cfg.out_dir / run_name / split.name
            with folder_as_unit(folder, STAGE) as stage:
                write_split(stage, mats, split, root, [sources[-1]])
                if cfg.visualize:
                    ranked_sheet(stage / "ranked.png", mats["dist"], [root / p for p in split.query["img_id"]],
                                 [root / p for p in split.gallery["img_id"]],
                                 split.query["player"].to_numpy() if split.labelled else None,
                                 split.gallery["player"].to_numpy() if split.labelled else None,
                                 n_queries=cfg.visualize_queries, title=f"{run_name} {split.name}")
            print(f"wrote {folder}" + (f" (with {folder / 'ranked.png'})" if cfg.visualize else ""))
            if split.labelled:
                table += [(run_name, split.name, kind, s) for kind, s in scores(mats, split)]
    if not ctx.main:
        return
    if len(cfg.checkpoints) > 1:
        for split in splits:
            runs = per_split[split.name]
            mats = {name: mean_fuse([r[name] for r in runs]) for name in KINDS}
            with folder_as_unit(cfg.out_dir / MEAN / split.name, STAGE) as stage:
                write_split(stage, mats, split, root, sources)
            if split.labelled:
                table += [(MEAN, split.name, kind, s) for kind, s in scores(mats, split)]
    print_table(table)


def print_table(rows: list[tuple[str, str, str, dict]]) -> None:
    if not rows:
        print("no labelled split: no scores")
        return
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'run':{width}s}{'split':11s}{'distance':14s}{'mAP':>8s}{'rank-1':>8s}{'rank-5':>8s}  queries scored")
    for run_name, split, kind, s in rows:
        print(f"{run_name:{width}s}{split:11s}{kind:14s}{100 * s['mAP']:8.2f}{100 * s['rank1']:8.2f}"
              f"{100 * s['rank5']:8.2f}  {s['queries']}")


if __name__ == "__main__":
    run(main, Config)
