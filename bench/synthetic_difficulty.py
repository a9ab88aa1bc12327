"""How hard is the data? mAP and rank-1 of two untrained baselines on the test and challenge splits.

    python -m bench.synthetic_difficulty [--data_dir=data] [--img_size=224]   # from the repository root

(a) raw pixels: each crop downscaled to `raw_height` x `raw_width`, flattened, L2-normalised;
(b) ImageNet efficientnet_lite0 features from the offline weights: resize keeping the aspect
ratio, pad to a square, global-pooled 1280-d features, L2-normalised.
The synthetic data are tuned so that (a) stays under 25% mAP and (b) lands between 30% and
70%: training has room to show. The challenge split is scored with the ground truth that only
synthetic data have (reid_challenge/ground_truth.csv); without it that split is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from reid.api import Embedder
from reid.config import format_config, run
from reid.data import image_paths
from reid.errors import ReidError
from reid.images import read_image
from reid.layouts import list_images, parse_name
from reid.metrics import evaluate
from reid.models import create_efficientnet_lite0, efficientnet_lite0_data_config
from reid.rules import Checked, Count, PositiveInt
from reid.splits import GROUND_TRUTH


@dataclass
class Config(Checked):
    data_dir: Path = Path("data")  # the dataset is <data_dir>/data_reid/
    img_size: PositiveInt = 224  # input side of efficientnet_lite0 (resize keeping aspect ratio, pad)
    raw_height: PositiveInt = 32  # raw-pixel baseline: crops downscaled to this height ...
    raw_width: PositiveInt = 16  # ... and this width
    batch_size: PositiveInt = 64  # images per forward pass
    workers: Count = 2  # image-decoding threads
    threads: Count = 0  # torch CPU threads; 0 keeps torch's default


def test_partition(root: Path) -> pd.DataFrame:
    """Query (frame 00) and gallery images of the test split, labelled by player."""
    rows = []
    for folder, img_type in (("reid_test/query", "q"), ("reid_test/gallery", "g")):
        rows += [(f"{folder}/{name}", parse_name(name).player, img_type) for name in list_images(root / folder)]
    return pd.DataFrame(rows, columns=["img_id", "player", "img_type"])


def challenge_partition(root: Path) -> pd.DataFrame | None:
    """Challenge images labelled with the synthetic ground truth, or None for real data."""
    path = root / GROUND_TRUTH
    return pd.read_csv(path)[["img_id", "player", "img_type"]] if path.is_file() else None


def raw_pixels(paths: list[Path], height: int, width: int) -> np.ndarray:
    """Each crop downscaled to height x width (area interpolation), flattened, L2-normalised."""
    flat = np.stack([cv2.resize(read_image(p), (width, height), interpolation=cv2.INTER_AREA).ravel()
                     for p in paths]).astype(np.float32)
    return flat / np.linalg.norm(flat, axis=1, keepdims=True).clip(min=1e-12)


def score(feats: np.ndarray, df: pd.DataFrame) -> dict:
    """mAP and ranks of one split's features (squared Euclidean on unit vectors)."""
    ids, q = df["player"].to_numpy(), (df["img_type"] == "q").to_numpy()
    return evaluate(2 - 2 * feats[q] @ feats[~q].T, ids[q], ids[~q])


def main(cfg: Config) -> None:
    print(format_config(cfg))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    root = cfg.data_dir / "data_reid"
    if not root.is_dir():
        raise ReidError(f"missing dataset folder {root}: run download.py first")
    splits = {"test": test_partition(root), "challenge": challenge_partition(root)}
    if splits["challenge"] is None:
        print(f"no {GROUND_TRUTH} (real data): the challenge split is skipped")
        del splits["challenge"]
    data = replace(efficientnet_lite0_data_config(), img_size=cfg.img_size)
    lite0 = Embedder(create_efficientnet_lite0(pretrained=True, num_classes=0), data, workers=cfg.workers)
    extractors = {
        f"raw pixels {cfg.raw_height}x{cfg.raw_width}": lambda paths: raw_pixels(paths, cfg.raw_height, cfg.raw_width),
        "ImageNet efficientnet_lite0": lambda paths: lite0.embed(paths, batch_size=cfg.batch_size, progress=True),
    }
    results = {(name, split): score(embed(image_paths(root, df)), df)
               for name, embed in extractors.items() for split, df in splits.items()}
    print(f"\n{root}")
    header = "| features | " + " | ".join(f"{s} mAP | {s} rank-1" for s in splits) + " |"
    print(header)
    print("|" + "---|" * (1 + 2 * len(splits)))
    for name in extractors:
        cells = [f"{100 * results[name, s]['mAP']:.1f} | {100 * results[name, s]['rank1']:.1f}" for s in splits]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    run(main, Config)
