"""Stage 3: train a large pretrained backbone with InfoNCE, the MMSports 2023 winning recipe.

    python train_our_post.py --preset=eva02_l448          # one of the three models the entry fused
    torchrun --nproc_per_node=4 train_our_post.py --preset=eva_giant336 --batch_size=16

A preset sets the fields below for one model; anything after it on the command line overrides
it. Every field of reid.engine.TrainConfig can be overridden as --field=value (see --help).
"""

from __future__ import annotations

from dataclasses import dataclass

from reid.config import run
from reid.engine import TrainConfig, fit
from reid.rules import Folder

# The three models the winning entry fused, each at its input size with its pairs per GPU.
# The EVAs train with gradient checkpointing: at 32 pairs per GPU they need it to fit 80 GB
# (README, "Will it fit?").
PRESETS = {
    "eva02_l448": ["--model=eva02_large_patch14_448.mim_m38m_ft_in22k_in1k", "--img_size=448",
                   "--batch_size=32", "--grad_checkpointing=true", "--run_name=eva02_l448"],
    "eva_giant336": ["--model=eva_giant_patch14_336.clip_ft_in1k", "--img_size=336",
                     "--batch_size=32", "--grad_checkpointing=true", "--run_name=eva_giant336"],
    "beitv2_l224": ["--model=beitv2_large_patch16_224.in1k_ft_in22k_in1k", "--img_size=224",
                    "--batch_size=32", "--run_name=beitv2_l224"],
}


@dataclass
class Config(TrainConfig):
    # Every other default is the engine's: the winning entry's recipe for EVA-02 large at 448
    # (8 epochs, lr 4e-5 to 1e-5 after 1 warm-up epoch, InfoNCE with smoothing 0.1, sharpen and
    # random erasing, bf16, seed 1).
    run_name: Folder = "eva02_l448"  # the run folder under checkpoint_dir


def main(cfg: Config) -> None:
    fit(cfg)


if __name__ == "__main__":
    run(main, Config, presets=PRESETS)
