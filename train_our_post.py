"""Stage 3: train a large pretrained backbone with InfoNCE, the MMSports 2023 winning recipe.

    python train_our_post.py --run_name=eva02
    torchrun --nproc_per_node=4 train_our_post.py --run_name=eva02 --batch_size=32

Every field of reid.engine.TrainConfig can be overridden as --field=value (see --help).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reid.config import Count, Folder, NonNegative, Positive, PositiveInt, Probability, run
from reid.engine import Smoothing, TrainConfig, fit


@dataclass
class Config(TrainConfig):
    # The winning entry's values. Alternatives it fused: "eva_giant_patch14_336.clip_ft_in1k"
    # with img_size=336, "beitv2_large_patch16_224.in1k_ft_in22k_in1k" with img_size=224.
    model: str = "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k"  # timm name, or open_clip:<arch>:<tag>
    img_size: PositiveInt = 448  # square input side
    epochs: PositiveInt = 8  # passes over the training images
    batch_size: PositiveInt = 32  # pairs per process (4 GPUs x 32 = 128 pairs per step)
    lr: Positive = 4e-5  # peak learning rate, AdamW with default betas and weight decay
    lr_end: NonNegative = 1e-5  # end of the polynomial decay
    warmup_epochs: NonNegative = 1.0  # linear warm-up from 0
    label_smoothing: Smoothing = 0.1  # InfoNCE cross-entropy smoothing
    amp: Literal["bf16", "fp16", "off"] = "bf16"  # mixed precision on CUDA; CPU runs fp32
    seed: Count = 1  # init, batch order and augmentation
    sharpen: bool = True  # with random erasing and the paired flip: the winning augmentation
    random_erasing: Probability = 0.5  # probability of random erasing
    run_name: Folder = "eva02_l448"  # the run folder under checkpoint_dir


def main(cfg: Config) -> None:
    fit(cfg)


if __name__ == "__main__":
    run(main, Config)
