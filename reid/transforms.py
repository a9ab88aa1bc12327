"""The training pipeline: resize-with-pad to a square, sharpen, normalise, random erasing.

Everything, random erasing included, is an albumentations transform inside one Compose, so
a single seed fixes every random choice of an item (see `reid.data.PairDataset`). Evaluation
uses `reid.images.preprocess` (no torch, no albumentations, for ONNX deployments); with
sharpening and erasing off, this pipeline gives exactly its pixels (tests/test_data.py).
"""

from __future__ import annotations

from typing import Sequence

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

from reid.images import interpolation_flag
from reid.rules import Finite, Positive, PositiveInt, Probability, checked


def _resize_pad(img_size: int, interpolation: str) -> list[A.BasicTransform]:
    """Longest side to `img_size`, then pad to a square: keeps the player's proportions."""
    return [
        A.LongestMaxSize(max_size=img_size, interpolation=interpolation_flag(interpolation)),
        A.PadIfNeeded(
            min_height=img_size,
            min_width=img_size,
            position="center",
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
        ),
    ]


@checked
def train_transform(
    img_size: PositiveInt,
    mean: Sequence[Finite],
    std: Sequence[Positive],
    sharpen: bool = True,
    random_erasing: Probability = 0.5,
    interpolation: str = "bilinear",
) -> A.Compose:
    """The winning entry's training pipeline.

    Random erasing comes after normalisation with value 0, so erased boxes hold the mean
    colour, as torchvision's RandomErasing would on a normalised tensor.
    """
    steps = _resize_pad(img_size, interpolation)
    if sharpen:
        steps.append(A.Sharpen())
    steps.append(A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0))
    if random_erasing > 0:
        steps.append(A.Erasing(scale=(0.02, 0.33), ratio=(0.3, 3.3), fill=0, p=random_erasing))
    steps.append(ToTensorV2())
    return A.Compose(steps)
