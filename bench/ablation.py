"""Which choices of the winning recipe matter? The paper's questions, asked of the synthetic data.

    python -m bench.ablation [--seeds=1,2,3] [--epochs=5] [--img_size=96]      # from the repository root
    python -m bench.ablation --size=full --data_dir=data/synthetic_full   # the 2023 counts; hours on CPU

Trains efficientnet_lite0 (offline ImageNet weights) with train_our_post_resnet.py once per
variant and seed, scores every run with predict.py, fuses the recipe's runs with sim_fuse.py and
dissim_fuse.py, scores the untrained ImageNet features as the reference, and prints three
tables (mean over seeds, with the spread across seeds so a difference can be told from noise):

1. training: InfoNCE vs ID loss; with and without Sharpen and random erasing (plain distances);
2. re-ranking: none vs k-reciprocal vs hard-weight (the recipe's runs);
3. fusion: single models vs mean fusion vs dissimilarity fusion vs the final recipe.

Every stage is printed as the command a user would type, then run in this process from exactly
those arguments (demo.step); finished runs are reused, so an interrupted ablation continues
where it stopped. All figures are on SYNTHETIC data (reid/synthetic/), never the DeepSportradar set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import download
import predict
import preprocess_data
from demo import SPLITS, fuse_recipe, score, step, train_or_reuse
from reid.config import format_config, run
from reid.files import write_text
from reid.rerank import KINDS
from reid.rules import Checked, Count, Positive, PositiveInt

# The recipe (InfoNCE, Sharpen, random erasing 0.5) and one change each.
VARIANTS = {
    "InfoNCE (recipe)": [],
    "ID loss": ["--loss=id"],
    "no Sharpen": ["--sharpen=false"],
    "no random erasing": ["--random_erasing=0"],
    "neither Sharpen nor erasing": ["--sharpen=false", "--random_erasing=0"],
}
RECIPE = next(iter(VARIANTS))
RERANKINGS = {**KINDS, "dist": "none (plain)"}  # table 2's rows: plain distances are "no re-ranking"


@dataclass
class Config(Checked):
    size: str = "small"  # synthetic size: tiny (tests), small (minutes a run) or full (the 2023 counts; hours on CPU)
    data_dir: Path = Path("data/synthetic")  # the dataset is <data_dir>/data_reid/ (made if missing)
    checkpoint_dir: Path = Path("checkpoints/ablation")  # one run folder per variant and seed
    out_dir: Path = Path("outputs/ablation")  # predictions, fusions and ablation.md
    seeds: tuple[Count, ...] = (1, 2, 3)  # every variant is trained once per seed
    img_size: PositiveInt = 96  # input side of efficientnet_lite0
    epochs: PositiveInt = 5  # passes over the training images
    batch_size: PositiveInt = 32  # pairs per step
    lr: Positive = 1e-3  # peak learning rate
    num_workers: Count = 2  # data loader processes


def run_name(variant: str, seed: int) -> str:
    slug = "".join(c if c.isalnum() else "_" for c in variant.lower()).strip("_")
    return f"{slug}_s{seed}"


def train_all(cfg: Config) -> int:
    """One train_our_post_resnet.py run per variant and seed, skipping finished ones; how many it trained."""
    trained = 0
    for variant, extra in VARIANTS.items():
        for seed in cfg.seeds:
            trained += train_or_reuse(cfg.data_dir, cfg.checkpoint_dir, run_name(variant, seed),
                                      "--model=efficientnet_lite0", "--pretrained=true", f"--img_size={cfg.img_size}",
                                      f"--epochs={cfg.epochs}", f"--batch_size={cfg.batch_size}", f"--lr={cfg.lr}",
                                      f"--seed={seed}", f"--num_workers={cfg.num_workers}", "--rerank_eval=false",
                                      *extra)
    return trained


def labels_file(cfg: Config, split: str) -> Path:
    return cfg.out_dir / run_name(RECIPE, cfg.seeds[0]) / split / "labels.csv"


def scores(cfg: Config, matrix: str) -> dict[str, float]:
    """Test and challenge mAP and rank-1 (percent) of one matrix, `matrix` holding {split}."""
    cells = {}
    for split in SPLITS:
        s = score(cfg.out_dir / matrix.format(split=split), labels_file(cfg, split))
        cells |= {f"{split} mAP": 100 * s["mAP"], f"{split} rank-1": 100 * s["rank1"]}
    return cells


def over_seeds(cfg: Config, variant: str, kind: str) -> dict[str, str]:
    """Mean over seeds with the spread (max - min), as 'mean ± spread/2'."""
    table = pd.DataFrame([scores(cfg, f"{run_name(variant, s)}/{{split}}/{kind}.npy") for s in cfg.seeds])
    half = (table.max() - table.min()) / 2
    return {col: f"{table[col].mean():.1f} ± {half[col]:.1f}" for col in table.columns}


def tables(cfg: Config) -> dict[str, pd.DataFrame]:
    untrained = scores(cfg, f"pretrained_efficientnet_lite0_{cfg.img_size}/{{split}}/dist.npy")
    training = {"untrained ImageNet features (reference)": {c: f"{v:.1f}" for c, v in untrained.items()}}
    training |= {variant: over_seeds(cfg, variant, "dist") for variant in VARIANTS}
    rerank = {kind: over_seeds(cfg, RECIPE, name) for name, kind in RERANKINGS.items()}
    fusion = {f"single model (hard-weight), seed {s}": scores(cfg, f"{run_name(RECIPE, s)}/{{split}}/dist_hw.npy")
              for s in cfg.seeds}
    fusion |= {"mean fusion (sim_fuse)": scores(cfg, "sim_fuse/{split}/dist.npy"),
               "dissimilarity fusion (dissim_fuse)": scores(cfg, "dissim_fuse/{split}/dist.npy"),
               "final recipe: mean of the two fusions": scores(cfg, "final/{split}/dist.npy")}
    fusion = {k: {c: f"{v:.1f}" for c, v in row.items()} for k, row in fusion.items()}
    return {"1. training choices (plain distances)": pd.DataFrame.from_dict(training, orient="index"),
            "2. re-ranking of the recipe's models": pd.DataFrame.from_dict(rerank, orient="index"),
            "3. fusion of the recipe's models": pd.DataFrame.from_dict(fusion, orient="index")}


def markdown(title: str, table: pd.DataFrame) -> str:
    lines = [f"**{title}**", "", "| | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
    lines += [f"| {index} | " + " | ".join(str(v) for v in row) + " |" for index, row in table.iterrows()]
    return "\n".join(lines)


def main(cfg: Config) -> None:
    print(format_config(cfg))
    started = time.time()
    step(download, "--synthetic=true", f"--synthetic_size={cfg.size}", f"--data_dir={cfg.data_dir}")
    step(preprocess_data, f"--data_dir={cfg.data_dir}")
    trained = train_all(cfg)
    runs = [f"pretrained:efficientnet_lite0@{cfg.img_size}"]
    runs += [str(cfg.checkpoint_dir / run_name(v, s)) for v in VARIANTS for s in cfg.seeds]
    step(predict, f"--checkpoints={','.join(runs)}", f"--data_dir={cfg.data_dir}",
         f"--out_dir={cfg.out_dir}", f"--num_workers={cfg.num_workers}")
    for split in SPLITS:
        inputs = ",".join(str(cfg.out_dir / run_name(RECIPE, s) / split / "dist_hw.npy") for s in cfg.seeds)
        fuse_recipe(inputs, cfg.out_dir, split, labels_file(cfg, split))
    report = [f"Ablation on SYNTHETIC data (reid/synthetic/, size {cfg.size}), efficientnet_lite0 at "
              f"{cfg.img_size} px, {cfg.epochs} epochs, seeds {', '.join(map(str, cfg.seeds))}; percent, "
              "mean ± half the spread over seeds; challenge scored with its synthetic ground truth."]
    report += [markdown(title, table) for title, table in tables(cfg).items()]
    report.append(f"ablation wall time: {(time.time() - started) / 60:.0f} min, training {trained} of "
                  f"{len(VARIANTS) * len(cfg.seeds)} runs (the others were reused)")
    text = "\n\n".join(report) + "\n"
    write_text(cfg.out_dir / "ablation.md", text)
    print("\n" + text)


if __name__ == "__main__":
    run(main, Config)
