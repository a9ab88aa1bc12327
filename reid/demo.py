"""`make demo`: the whole pipeline on the synthetic data, offline, on CPU, then one results table.

Each step is printed as the command a user would type, then run as that command. Steps whose
results are already on disk (data, partitions, trained runs) are reused on a second run.
All figures it prints are on SYNTHETIC data (reid/synthetic.py), not the DeepSportradar set.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from reid.io import labels_for, load_matrix
from reid.metrics import evaluate

DATA = Path("data/synthetic")
CHECKPOINTS = Path("checkpoints/demo")
OUT = Path("outputs/demo")
SPLITS = ("test", "challenge")
MODEL = "efficientnet_lite0"
# Two models, as the recipe fuses several: the offline ImageNet weights at two input sizes.
SIZES = {"lite0_96": 96, "lite0_128": 128}
RUNS = {run: [f"--img_size={size}", f"--seed={i}"] for i, (run, size) in enumerate(SIZES.items(), 1)}
TRAIN = ["--model=efficientnet_lite0", "--pretrained=true", "--epochs=5", "--batch_size=32",
         "--lr=1e-3", "--lr_end=1e-5", "--warmup_epochs=0.5", "--num_workers=2", "--rerank_eval=false"]
RUNS_FIRST = next(iter(RUNS))  # its labels.csv scores every matrix of a split (same ids everywhere)
KINDS = {"dist": "plain", "dist_kr": "k-reciprocal", "dist_hw": "hard-weight"}


def step(script: str, *args: str) -> None:
    """Print the command as a user would type it, then run it; stop the demo if it fails."""
    print(f"\n$ python {script} {' '.join(shlex.quote(a) for a in args)}", flush=True)
    result = subprocess.run([sys.executable, script, *args])
    if result.returncode:
        raise SystemExit(f"demo stopped: {script} exited with {result.returncode}")


def fused_inputs(split: str) -> str:
    return ",".join(str(OUT / run / split / "dist_hw.npy") for run in RUNS)


def fuse_recipe(inputs: str, out: Path, split: str, labels: Path) -> None:
    """Mean and dissimilarity fusion of `inputs` (comma-separated matrices), then the final
    recipe, the mean of the two: into `out`/{sim_fuse,dissim_fuse,final}/`split`."""
    fused = {kind: out / kind / split for kind in ("sim_fuse", "dissim_fuse", "final")}
    step("sim_fuse.py", f"--inputs={inputs}", f"--out_dir={fused['sim_fuse']}", f"--labels={labels}")
    step("dissim_fuse.py", f"--inputs={inputs}", f"--out_dir={fused['dissim_fuse']}", f"--labels={labels}")
    step("sim_fuse.py", f"--inputs={fused['sim_fuse'] / 'dist.npy'},{fused['dissim_fuse'] / 'dist.npy'}",
         f"--out_dir={fused['final']}", f"--labels={labels}")


def score(path: Path, labels: Path) -> dict:
    distmat, q, g = load_matrix(path)
    return evaluate(distmat, labels_for(labels, q), labels_for(labels, g))


def results() -> pd.DataFrame:
    """One row per matrix: the untrained baseline at each model's input size (where its training
    starts), each model plain / re-ranked, each fusion."""
    rows = {f"ImageNet {MODEL} at {size} px, untrained (plain)": f"pretrained_{MODEL}_{size}/{{split}}/dist.npy"
            for size in SIZES.values()}
    for run in RUNS:
        rows |= {f"{run} {kind}": f"{run}/{{split}}/{name}.npy" for name, kind in KINDS.items()}
    rows |= {"mean fusion of hard-weight (sim_fuse)": "sim_fuse/{split}/dist.npy",
             "dissimilarity fusion (dissim_fuse)": "dissim_fuse/{split}/dist.npy",
             "final recipe: mean of the two fusions": "final/{split}/dist.npy"}
    table = {}
    for label, pattern in rows.items():
        cells = {}
        for split in SPLITS:
            s = score(OUT / pattern.format(split=split), OUT / RUNS_FIRST / split / "labels.csv")
            cells |= {f"{split} mAP": 100 * s["mAP"], f"{split} rank-1": 100 * s["rank1"]}
        table[label] = cells
    return pd.DataFrame.from_dict(table, orient="index")


def main() -> None:
    started = time.time()
    step("download.py", "--synthetic=true", f"--data_dir={DATA}")
    step("preprocess_data.py", f"--data_dir={DATA}")
    for run, extra in RUNS.items():
        if (CHECKPOINTS / run / "best.pt").exists():
            print(f"\n{CHECKPOINTS / run} is already trained: reusing it (delete it to train again)")
            continue
        step("train_our_post_resnet.py", f"--data_dir={DATA}", f"--checkpoint_dir={CHECKPOINTS}",
             f"--run_name={run}", *TRAIN, *extra)
    checkpoints = [f"pretrained:{MODEL}@{size}" for size in SIZES.values()] + [str(CHECKPOINTS / r) for r in RUNS]
    step("predict.py", f"--checkpoints={','.join(checkpoints)}", f"--data_dir={DATA}", f"--out_dir={OUT}",
         "--num_workers=2", "--visualize=true", "--visualize_queries=6")
    for split in SPLITS:
        fuse_recipe(fused_inputs(split), OUT, split, OUT / RUNS_FIRST / split / "labels.csv")
    table = results()
    print("\nResults on SYNTHETIC data (reid/synthetic.py, size small), in percent; "
          "the challenge split is scored with its synthetic ground truth:\n")
    print(table.to_string(float_format=lambda v: f"{v:6.2f}"))
    table.to_csv(OUT / "results.csv", float_format="%.2f")
    print(f"\nranked results: {OUT / RUNS_FIRST / 'test' / 'ranked.png'}; table: {OUT / 'results.csv'}")
    print(f"demo wall time: {time.time() - started:.0f} s (after setup)")


if __name__ == "__main__":
    main()
