"""`make demo`: the whole pipeline on the synthetic data, offline, on CPU, then one results table.

    python demo.py                                   # what `make demo` runs
    python demo.py --epochs=10 --img_sizes=96,128,160 --seeds=1,2,3

What it runs, what it reuses on a second run, and the figures to expect: README.md, "What `make demo`
does". All figures it prints are on SYNTHETIC data (reid/synthetic/), not the DeepSportradar set.
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pandas as pd

import dissim_fuse
import download
import identify
import link_tracks
import predict
import preprocess_data
import sim_fuse
import track
import train_our_post_resnet
from reid.config import format_config, parse_args, run, to_dict
from reid.errors import ReidError
from reid.files import read_json, write_text
from reid.io import labels_for, load_matrix
from reid.metrics import evaluate
from reid.rerank import KINDS
from reid.rules import Checked, Count, NonNegative, Positive, PositiveInt
from reid.runs import data_fingerprint, foreign_files, reuse_problem
from reid.synthetic import Size
from reid.synthetic.clips import CLIPS, sequence_names
from reid.track_metrics import tracking_scores


@dataclass
class Config(Checked):
    data_dir: Path = Path("data/synthetic")  # the synthetic dataset is made in <data_dir>/data_reid/
    synthetic_size: Size = "small"  # tiny (tests), small (minutes a model on CPU) or full (the 2023 counts)
    checkpoint_dir: Path = Path("checkpoints/demo")  # one run folder per model, lite0_<img_size>
    out_dir: Path = Path("outputs/demo")  # matrices, fusions, ranked.png and results.csv
    img_sizes: tuple[PositiveInt, ...] = (96, 128)  # one model per input side: the recipe fuses several models
    seeds: tuple[Count, ...] = (1, 2)  # one seed per model, in the order of img_sizes
    epochs: PositiveInt = 5  # passes over the training images
    batch_size: PositiveInt = 32  # pairs per step
    lr: Positive = 1e-3  # peak learning rate
    lr_end: NonNegative = 1e-5  # end of the polynomial decay
    warmup_epochs: NonNegative = 0.5  # linear warm-up from 0, in epochs
    num_workers: Count = 2  # data loader processes, training and prediction
    visualize_queries: PositiveInt = 6  # queries on the ranked.png sheet of each model
    clip_epochs: PositiveInt = 1  # the linking model's passes over crops of other clips (synthetic_size of them)


MODEL = "efficientnet_lite0"  # the backbone whose ImageNet weights ship offline (a pip package)
SPLITS = ("test", "challenge")
# README's demo table: each figure's mean, min and max over three demos (python -m bench.demo_spread)
REFERENCE = Path(__file__).resolve().parent / "docs" / "demo_results.json"
# The settings that decide the figures (the seeds are what the reference spreads over).
RECIPE_FIELDS = ("synthetic_size", "img_sizes", "epochs", "batch_size", "lr", "lr_end", "warmup_epochs")


def step(stage: ModuleType, *args: str) -> None:
    """Print the command a user would type, then run that stage in this process from exactly those
    arguments: the printed command and what runs cannot differ."""
    print(f"\n$ python {Path(stage.__file__).name} {' '.join(shlex.quote(a) for a in args)}", flush=True)
    stage.main(parse_args(stage.Config, args))


def model_runs(cfg: Config) -> dict[str, list[str]]:
    """Run name -> the training arguments that differ between the models (input side, seed)."""
    if not cfg.img_sizes or len(cfg.img_sizes) != len(cfg.seeds):
        raise ReidError(f"--img_sizes and --seeds give one value per model: got {len(cfg.img_sizes)} sizes "
                        f"and {len(cfg.seeds)} seeds")
    pairs = zip(cfg.img_sizes, cfg.seeds, strict=True)
    return {f"lite0_{size}": [f"--img_size={size}", f"--seed={seed}"] for size, seed in pairs}


def train_or_reuse(data_dir: Path, checkpoint_dir: Path, run_name: str, *args: str) -> bool:
    """Train a run unless its folder holds a finished run of the same recipe on the same data;
    whether it trained. Any other run in the folder (interrupted, other settings, other data)
    is said in one line, removed and trained again: a figure must come from the run it names."""
    args = (f"--data_dir={data_dir}", f"--checkpoint_dir={checkpoint_dir}", f"--run_name={run_name}", *args)
    wanted = to_dict(parse_args(train_our_post_resnet.Config, args))
    run_dir = checkpoint_dir / run_name
    problem = reuse_problem(run_dir, wanted, data_fingerprint(data_dir / "data_reid"))
    if problem is None:
        print(f"\n{run_dir} is already trained with this recipe on this data: reusing it")
        return False
    if run_dir.exists():
        if foreign := foreign_files(run_dir):
            raise ReidError(f"{run_dir} cannot be reused ({problem}) and holds {', '.join(foreign[:3])}, which "
                            "no training wrote: move them away, or choose another --checkpoint_dir")
        print(f"\n{run_dir} cannot be reused: {problem}; training it again")
        shutil.rmtree(run_dir)
    step(train_our_post_resnet, *args)
    return True


def train(cfg: Config, run_name: str, extra: list[str]) -> bool:
    """One demo model (training is most of the demo's time, so a second demo reuses it)."""
    return train_or_reuse(cfg.data_dir, cfg.checkpoint_dir, run_name, f"--model={MODEL}", "--pretrained=true",
                          f"--epochs={cfg.epochs}", f"--batch_size={cfg.batch_size}", f"--lr={cfg.lr}",
                          f"--lr_end={cfg.lr_end}", f"--warmup_epochs={cfg.warmup_epochs}",
                          f"--num_workers={cfg.num_workers}", "--rerank_eval=false", *extra)


def fuse_recipe(inputs: str, out: Path, split: str, labels: Path) -> None:
    """Mean and dissimilarity fusion of `inputs` (comma-separated matrices), then the final
    recipe, the mean of the two: into `out`/{sim_fuse,dissim_fuse,final}/`split`."""
    fused = {kind: out / kind / split for kind in ("sim_fuse", "dissim_fuse", "final")}
    step(sim_fuse, f"--inputs={inputs}", f"--out_dir={fused['sim_fuse']}", f"--labels={labels}")
    step(dissim_fuse, f"--inputs={inputs}", f"--out_dir={fused['dissim_fuse']}", f"--labels={labels}")
    step(sim_fuse, f"--inputs={fused['sim_fuse'] / 'dist.npy'},{fused['dissim_fuse'] / 'dist.npy'}",
         f"--out_dir={fused['final']}", f"--labels={labels}")


def score(path: Path, labels: Path) -> dict[str, float]:
    """mAP and CMC of one saved matrix against a labels.csv."""
    distmat, q, g = load_matrix(path)
    return evaluate(distmat, labels_for(labels, q), labels_for(labels, g))


def results(cfg: Config, runs: list[str]) -> pd.DataFrame:
    """One row per matrix: the untrained baseline at each model's input side (where its training
    starts), each model plain and re-ranked, each fusion; the first run's labels score them all."""
    rows = {f"ImageNet {MODEL} at {size} px, untrained (plain)": f"pretrained_{MODEL}_{size}/{{split}}/dist.npy"
            for size in cfg.img_sizes}
    for run_name in runs:
        rows |= {f"{run_name} {kind}": f"{run_name}/{{split}}/{name}.npy" for name, kind in KINDS.items()}
    rows |= {"mean fusion of hard-weight (sim_fuse)": "sim_fuse/{split}/dist.npy",
             "dissimilarity fusion (dissim_fuse)": "dissim_fuse/{split}/dist.npy",
             "final recipe: mean of the two fusions": "final/{split}/dist.npy"}
    table = {}
    for label, pattern in rows.items():
        cells = {}
        for split in SPLITS:
            s = score(cfg.out_dir / pattern.format(split=split), cfg.out_dir / runs[0] / split / "labels.csv")
            cells |= {f"{split} mAP": 100 * s["mAP"], f"{split} rank-1": 100 * s["rank1"]}
        table[label] = cells
    return pd.DataFrame.from_dict(table, orient="index")


def spread(tables: list[pd.DataFrame]) -> dict[str, dict[str, dict[str, float]]]:
    """{row: {column: {mean, min, max}}} over the results tables of several demos."""
    stacked = pd.concat(tables, keys=range(len(tables)))
    stats = {name: stacked.groupby(level=1, sort=False).agg(name) for name in ("mean", "min", "max")}
    return {row: {col: {name: round(float(stats[name].loc[row, col]), 2) for name in stats}
                  for col in tables[0].columns} for row in tables[0].index}


def recipe(cfg: Config) -> dict:
    """The fields of `cfg` that decide the figures, as JSON values."""
    return {k: v for k, v in to_dict(cfg).items() if k in RECIPE_FIELDS}


def compare(table: pd.DataFrame, cfg: Config, reference: Path = REFERENCE) -> list[str]:
    """Lines that set this demo's figures beside README's (mean ± half the spread over seeds),
    with the difference; a figure outside the documented [min, max] is flagged."""
    ref = read_json(reference, {})
    if not ref:
        return [f"no reference figures at {reference}: python -m bench.demo_spread makes them"]
    if ref["recipe"] != recipe(cfg):
        return [f"not compared with README: these settings differ from its {ref['recipe']}"]
    lines, outside = [f"{'':52s}{'column':18s}{'this run':>9s}{'README':>16s}{'diff':>8s}"], 0
    for row, cells in ref["rows"].items():
        for col, r in cells.items():
            value = float(table.loc[row, col])
            flag = not r["min"] - 0.005 <= value <= r["max"] + 0.005
            outside += flag
            half = (r["max"] - r["min"]) / 2
            lines.append(f"{row[:50]:52s}{col:18s}{value:9.2f}{r['mean']:10.2f} ± {half:4.2f}"
                         f"{value - r['mean']:+8.2f}{'  OUTSIDE the spread' if flag else ''}")
    n = sum(len(cells) for cells in ref["rows"].values())
    lines.append(f"{n - outside} of {n} figures within README's spread over seeds {ref['seeds']}"
                 + (f"; {outside} outside (CPU kernels differ between machines)" if outside else ""))
    return lines


def identify_challenge(cfg: Config, best: str) -> None:
    """Group the challenge crops into players with the best model (by test mAP), no count given;
    the synthetic ground truth only scores the result."""
    challenge = cfg.data_dir / "data_reid" / "reid_challenge"
    print(f"\nWho is who among the challenge crops, with {best} (the best model on the test split):")
    step(identify, f"--images={challenge}", f"--checkpoints={cfg.checkpoint_dir / best}",
         f"--truth={challenge / 'ground_truth.csv'}", f"--out_dir={cfg.out_dir / 'identify' / 'challenge'}",
         f"--num_workers={cfg.num_workers}")


def link_clip(cfg: Config) -> None:
    """Tracks in, players out on one synthetic game clip: a model trained on crops of other clips,
    the tracker's tracklets, then link_tracks.py; scored with the clip's ground truth."""
    crops = cfg.data_dir.parent / f"{cfg.data_dir.name}_clip_crops"
    clips = cfg.data_dir.parent / f"{cfg.data_dir.name}_clips"
    print("\nTracks in, players out, on a synthetic game clip:")
    step(download, "--synthetic=true", "--synthetic_kind=clip_crops", f"--synthetic_size={cfg.synthetic_size}",
         f"--data_dir={crops}")
    step(preprocess_data, f"--data_dir={crops}", "--layout=folders")
    train_or_reuse(crops, cfg.checkpoint_dir, "clips_lite0_96", f"--model={MODEL}", "--pretrained=true",
                   "--img_size=96", f"--epochs={cfg.clip_epochs}", f"--batch_size={cfg.batch_size}", f"--lr={cfg.lr}",
                   f"--lr_end={cfg.lr_end}", f"--warmup_epochs={cfg.warmup_epochs}",
                   f"--num_workers={cfg.num_workers}", "--rerank_eval=false", "--seed=1")
    step(download, "--synthetic=true", "--synthetic_kind=clips", f"--synthetic_size={cfg.synthetic_size}",
         f"--data_dir={clips}")
    sequence = clips / CLIPS / sequence_names(cfg.synthetic_size, 0)[0]
    tracks = cfg.out_dir / "track" / f"{sequence.name}.txt"
    step(track, f"--sequence={sequence}", f"--out={tracks}")
    linked = cfg.out_dir / "link_tracks"
    step(link_tracks, f"--sequence={sequence}", f"--tracks={tracks}",
         f"--checkpoints={cfg.checkpoint_dir / 'clips_lite0_96'}", f"--out_dir={linked}",
         f"--num_workers={cfg.num_workers}")
    truth = sequence / "gt" / "gt.txt"
    before, after = tracking_scores(truth, tracks), tracking_scores(truth, linked / "tracks.txt")
    print(f"\n{sequence.name}: tracker HOTA {before['HOTA']:.1f} / IDF1 {before['IDF1']:.1f} -> "
          f"linked {after['HOTA']:.1f} / {after['IDF1']:.1f}")


def main(cfg: Config) -> None:
    print(format_config(cfg))
    started = time.time()
    runs = model_runs(cfg)
    first = next(iter(runs))
    step(download, "--synthetic=true", f"--synthetic_size={cfg.synthetic_size}", f"--data_dir={cfg.data_dir}")
    step(preprocess_data, f"--data_dir={cfg.data_dir}")
    for run_name, extra in runs.items():
        train(cfg, run_name, extra)
    checkpoints = [f"pretrained:{MODEL}@{size}" for size in cfg.img_sizes]
    checkpoints += [str(cfg.checkpoint_dir / run_name) for run_name in runs]
    step(predict, f"--checkpoints={','.join(checkpoints)}", f"--data_dir={cfg.data_dir}", f"--out_dir={cfg.out_dir}",
         f"--num_workers={cfg.num_workers}", "--visualize=true", f"--visualize_queries={cfg.visualize_queries}")
    for split in SPLITS:
        inputs = ",".join(str(cfg.out_dir / run_name / split / "dist_hw.npy") for run_name in runs)
        fuse_recipe(inputs, cfg.out_dir, split, cfg.out_dir / first / split / "labels.csv")
    table = results(cfg, list(runs))
    print(f"\nResults on SYNTHETIC data (reid/synthetic/, size {cfg.synthetic_size}), in percent; "
          "the challenge split is scored with its synthetic ground truth:\n")
    print(table.to_string(float_format=lambda v: f"{v:6.2f}"))
    write_text(cfg.out_dir / "results.csv", table.to_csv(float_format="%.2f"))
    print(f"\nranked results: {cfg.out_dir / first / 'test' / 'ranked.png'}; "
          f"table: {cfg.out_dir / 'results.csv'}")
    print("training curves: " + ", ".join(str(cfg.checkpoint_dir / r / "curves.png") for r in runs))
    print("\nCompared with README's table:\n" + "\n".join(compare(table, cfg)))
    identify_challenge(cfg, max(runs, key=lambda r: table.loc[f"{r} plain", "test mAP"]))
    link_clip(cfg)
    print(f"demo wall time: {time.time() - started:.0f} s (after setup)")


if __name__ == "__main__":
    run(main, Config)
