"""Stage 4: features -> distance matrices (plain, k-reciprocal, hard-weight) and submission CSVs.

    python predict.py --checkpoints=checkpoints/eva02_l448
    python predict.py --checkpoints=checkpoints/a,checkpoints/b --visualize=true
    python predict.py --checkpoints=pretrained:efficientnet_lite0   # untrained ImageNet features

Writes, per checkpoint and split, `<out_dir>/<run>/<split>/`: dist.npy, dist_kr.npy,
dist_hw.npy, query_ids.txt, gallery_ids.txt, the official CSV of each matrix, labels.csv where
labels are known, and provenance.json (each checkpoint's sha256 and the images' fingerprint);
with several checkpoints also `<out_dir>/mean/<split>/` (their mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from reid.config import Count, PositiveInt, Probability, format_config, run
from reid.data import EvalDataset, SplitImages, load_split, make_loader, require_images
from reid.engine import amp_dtype, load_checkpoint, resolve_device
from reid.errors import ReidError
from reid.features import extract_features
from reid.fusion import mean_fuse
from reid.io import PROVENANCE, folder_as_unit, require_writable, write_csv, write_json, write_outputs
from reid.metrics import evaluate
from reid.models import DataConfig, build_encoder
from reid.rerank import KINDS, distance_matrices
from reid.runs import file_sha256, images_fingerprint
from reid.transforms import eval_transform
from reid.visualize import ranked_sheet


@dataclass
class Config:
    checkpoints: tuple[Path, ...] = (  # run folders (their best.pt), .pt files, or pretrained:<model>[@size]
        Path("checkpoints/eva02_l448"),)
    data_dir: Path = Path("data")  # dataset root: <data_dir>/data_reid/ with the CSV partitions
    splits: tuple[str, ...] = ("test", "challenge")  # test (labelled) and/or challenge
    batch_size: PositiveInt = 64  # images per forward pass
    num_workers: Count = 4  # data loader processes
    device: Literal["auto", "cuda", "cpu"] = "auto"  # auto: CUDA when available
    amp: Literal["bf16", "fp16", "off"] = "bf16"  # mixed precision on CUDA; CPU runs fp32
    k1: PositiveInt = 20  # re-ranking: k-reciprocal neighbours
    k2: PositiveInt = 6  # re-ranking: local query expansion
    lambda_value: Probability = 0.3  # re-ranking: weight of the original distance
    # Both re-rankings take squared Euclidean distances in the winning entry; the k-reciprocal
    # port squares its input itself, so it is meant for plain Euclidean ones.
    rerank_input: Literal["squared", "euclidean"] = "squared"  # distances fed to the re-rankings
    flip_tta: bool = False  # add the features of the mirrored image (the winning entry: off)
    out_dir: Path = Path("outputs")  # one folder per run and split
    visualize: bool = False  # write ranked.png: the first queries with their top-10
    visualize_queries: PositiveInt = 8  # queries on the sheet


PRETRAINED = "pretrained:"
MEAN = "mean"  # the output folder of the mean of several checkpoints' matrices


def checkpoint_file(path: Path) -> Path:
    """A run folder means its best.pt."""
    path = path / "best.pt" if path.is_dir() else path
    if not path.is_file():
        raise ReidError(f"no checkpoint at {path}")
    return path


def pretrained_entry(text: str) -> tuple[str, int | None]:
    """(model name, input side or None) of `pretrained:<model>[@size]`."""
    name, _, size = text.removeprefix(PRETRAINED).partition("@")
    if size and not (size.isdigit() and int(size) > 0):
        raise ReidError(f"--checkpoints={text}: the size after @ must be a whole number of pixels, at least 1")
    return name, int(size) if size else None


def run_name_of(entry: Path) -> str:
    """The output folder of an entry: its run folder's name, the .pt file's stem, or
    pretrained_<model>[_<size>]; checks the entry on the way."""
    text = str(entry)
    if text.startswith(PRETRAINED):
        name, size = pretrained_entry(text)
        return "pretrained_" + name.replace(":", "_").replace("/", "_") + (f"_{size}" if size else "")
    path = checkpoint_file(entry)
    return path.parent.name if path.name in ("best.pt", "last.pt") else path.stem


def check_entries(entries: tuple[Path, ...]) -> None:
    """Before any work: every entry must exist or be a well-formed pretrained model, and no two
    may write into one output folder (nor into `mean`)."""
    names = [run_name_of(e) for e in entries]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ReidError(f"--checkpoints: {entries[names.index(name)]} and {entries[i]} would both write "
                            f"{name}/; copy or rename one run folder")
        if name == MEAN and len(entries) > 1:
            raise ReidError(f"--checkpoints: {entries[i]} would write {MEAN}/, where the mean of all goes; "
                            "rename its run folder")


def load_encoder(entry: Path, device: torch.device) -> tuple[torch.nn.Module, DataConfig, str]:
    """(encoder, its data config, a run name) from a checkpoint, or from `pretrained:<model>[@size]`:
    a backbone as it comes, untrained here, the baseline that training has to beat."""
    text = str(entry)
    if text.startswith(PRETRAINED):
        name, size = pretrained_entry(text)
        encoder, data_cfg = build_encoder(name, pretrained=True, img_size=size)
        return encoder.to(device).eval(), data_cfg, run_name_of(entry)
    path = checkpoint_file(entry)
    ckpt = load_checkpoint(path)
    name = ckpt["config"]["model"]
    data_cfg = DataConfig.from_dict(ckpt["data_config"])
    encoder, _ = build_encoder(name, pretrained=False, img_size=data_cfg.img_size)
    try:
        encoder.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ReidError(f"{path}: its weights do not fit the model {name}: {str(exc).splitlines()[0]}") from None
    return encoder.to(device).eval(), data_cfg, run_name_of(entry)


def source(entry: Path) -> dict[str, str]:
    """What the features came from: the checkpoint file and its sha256, or the pretrained name."""
    if str(entry).startswith(PRETRAINED):
        return {"checkpoint": str(entry), "weights": "as the library ships them (untrained here)"}
    path = checkpoint_file(entry)
    return {"checkpoint": str(path.resolve()), "checkpoint_sha256": file_sha256(path)}


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
    q, g = split.query["player"].to_numpy(), split.gallery["player"].to_numpy()
    return [(KINDS[name], evaluate(mat, q, g)) for name, mat in mats.items()]


def main(cfg: Config) -> None:
    print(format_config(cfg))
    if not cfg.checkpoints:
        raise ReidError("no checkpoints given: --checkpoints=run_folder[,run_folder...]")
    check_entries(cfg.checkpoints)
    require_writable(cfg.out_dir, "out_dir")
    if not cfg.splits:
        raise ReidError("no splits given: --splits=test,challenge (or one of them)")
    device = resolve_device(cfg.device)
    dtype = amp_dtype(cfg.amp, device)
    root = cfg.data_dir / "data_reid"
    splits = []
    for name in cfg.splits:
        if name == "challenge" and not (root / "challenge_df.csv").is_file():
            print(f"warning: no {root / 'challenge_df.csv'}: skipping the challenge split")
            continue
        splits.append(load_split(root, name))
        require_images([root / p for p in splits[-1].df["img_id"]], f"the {name} split")
    table: list[tuple[str, str, str, dict]] = []
    per_split: dict[str, list[dict[str, np.ndarray]]] = {s.name: [] for s in splits}
    sources: list[dict[str, str]] = []
    for entry in cfg.checkpoints:
        encoder, data_cfg, run_name = load_encoder(entry, device)
        sources.append(source(entry))
        transform = eval_transform(data_cfg.img_size, data_cfg.mean, data_cfg.std, data_cfg.interpolation)
        for split in splits:
            loader = make_loader(EvalDataset(root, split.df, transform), batch_size=cfg.batch_size,
                                num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
            feats, _, _ = extract_features(encoder, loader, device, dtype, flip=cfg.flip_tta,
                                           desc=f"{run_name} {split.name}")
            is_q = (split.df["img_type"] == "q").to_numpy()
            mats = distance_matrices(feats[is_q], feats[~is_q], cfg.k1, cfg.k2, cfg.lambda_value,
                                     cfg.rerank_input)
            per_split[split.name].append(mats)
            folder = cfg.out_dir / run_name / split.name
            with folder_as_unit(folder) as stage:
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
    if len(cfg.checkpoints) > 1:
        for split in splits:
            runs = per_split[split.name]
            mats = {name: mean_fuse([r[name] for r in runs]) for name in KINDS}
            with folder_as_unit(cfg.out_dir / MEAN / split.name) as stage:
                write_split(stage, mats, split, root, sources)
            if split.labelled:
                table += [(MEAN, split.name, kind, s) for kind, s in scores(mats, split)]
    print_table(table)


def print_table(rows: list[tuple[str, str, str, dict]]) -> None:
    if not rows:
        print("no labelled split: no scores")
        return
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'run':{width}s}{'split':11s}{'distance':14s}{'mAP':>8s}{'rank-1':>8s}{'rank-5':>8s}")
    for run_name, split, kind, s in rows:
        print(f"{run_name:{width}s}{split:11s}{kind:14s}{100 * s['mAP']:8.2f}{100 * s['rank1']:8.2f}"
              f"{100 * s['rank5']:8.2f}")


if __name__ == "__main__":
    run(main, Config)
