"""How often a Ctrl-C during training is lost or ends in a traceback: make_loader now and as it was.

    python -m bench.ctrl_c                    # 40 presses each way, two busy processes beside
    python -m bench.ctrl_c --runs=100 --load=0
    python -m bench.ctrl_c --reference=        # now only (no git history needed)

Each run starts a child process that loads epochs of a small dataset with two loader workers,
forever. An epoch stops a few batches before its end, as training stops at its step count.
The child's whole process group then gets SIGINT, as a terminal sends it, at a random moment.
The run counts as:

- clean: exit status 130 and the single line "interrupted";
- lost: still running 10 s later (Python swallowed the KeyboardInterrupt, the epochs went on);
- traceback: anything else on stderr.

The two ways alternate, run by run, so a slow spell of the machine hits both alike:

- now: `reid.loader.make_loader`, each epoch's iterator closed as `train_epoch` closes it;
- before: `make_loader` as committed at `--reference` (git), each epoch's iterator dropped
  as `train_epoch` dropped it then.

Busy processes (`--load`) make the workers' start and stop slower, so the presses land in them
more often.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass

import torch

from bench.common import REPO, load_revision
from reid.config import run
from reid.loader import make_loader
from reid.rules import Checked, Count, PositiveInt

PATIENCE = 10.0  # seconds a child may take to end after Ctrl-C before it counts as lost


@dataclass
class Config(Checked):
    runs: PositiveInt = 40  # presses for each way
    load: Count = 2  # busy processes running beside the children
    reference: str = "b5a5371"  # git revision whose make_loader is "before"; empty: now only
    seed: Count = 0  # seed of the moments of the presses
    child: str = ""  # set by the bench for its own children: the way they iterate


class Zeros(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.zeros(3, 64, 64)


def epochs(way: str, reference: str) -> None:
    """Load epochs until interrupted, each stopped three batches early."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal, even if started in the background
    if way == "now":
        loader = make_loader(Zeros(), batch_size=4, num_workers=2)
        opened = contextlib.closing
    else:
        loader = load_revision("reid/data.py", reference).make_loader(Zeros(), batch_size=4, num_workers=2)
        opened = contextlib.nullcontext
    print("ready", flush=True)
    try:
        while True:
            with opened(iter(loader)) as batches:
                for _ in range(len(loader) - 3):
                    next(batches)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def press(way: str, reference: str, delay: float) -> str:
    """Start a child, send its process group SIGINT after `delay` seconds; how it ended."""
    child = subprocess.Popen([sys.executable, "-m", "bench.ctrl_c", f"--child={way}", f"--reference={reference}"],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    if child.stdout.readline().strip() != "ready":
        child.wait()
        raise SystemExit(f"the {way!r} child did not start: {child.stderr.read().strip()}")
    try:
        child.communicate(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGINT)
    try:
        _, err = child.communicate(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return "lost"
    return "clean" if child.returncode == 130 and err.strip() == "interrupted" else "traceback"


def main(cfg: Config) -> None:
    if cfg.child:
        epochs(cfg.child, cfg.reference)
        return
    if cfg.reference and load_revision("reid/data.py", cfg.reference) is None:
        raise SystemExit(f"no make_loader at {cfg.reference} to compare with")
    ways = ("now", "before") if cfg.reference else ("now",)
    rng = random.Random(cfg.seed)
    counts = {way: {"clean": 0, "lost": 0, "traceback": 0} for way in ways}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cfg.load)]
    try:
        for _ in range(cfg.runs):
            delay = rng.uniform(0.2, 1.5)
            for way in ways:
                counts[way][press(way, cfg.reference, delay)] += 1
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    print(f"{cfg.runs} presses each way, {cfg.load} busy processes beside")
    print(f"{'make_loader':<20} {'clean':>6} {'lost':>6} {'traceback':>10}")
    for way in ways:
        name = "now" if way == "now" else f"before ({cfg.reference})"
        print(f"{name:<20} {counts[way]['clean']:>6} {counts[way]['lost']:>6} {counts[way]['traceback']:>10}")


if __name__ == "__main__":
    run(main, Config)
