"""The raw material the cast, the arena and the drawing share: colours, skin tones, letters, fonts."""

from __future__ import annotations

import colorsys
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import ImageFont

RGB = tuple[int, int, int]
T = TypeVar("T")

SKIN = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 96),
                 (160, 102, 66), (120, 76, 48), (92, 58, 38), (66, 42, 30)], dtype=float)
FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSans.ttf")
LETTERS = "ABCDEFGHIJKLMNOPRSTUVWYZ"


def hsv(h: float, s: float, v: float) -> RGB:
    """An RGB colour from hue (wrapping), saturation and value: hues are drawn, so they may pass 1."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def pick(rng: np.random.Generator, items: list[T] | tuple[T, ...]) -> T:
    """One of `items` as it is: `rng.choice` would turn a list of colours into an array."""
    return items[int(rng.integers(len(items)))]


def word(rng: np.random.Generator, lo: int, hi: int) -> str:
    """Random capitals (a surname, a sponsor, a club), lo to hi - 1 of them: length first, then letters."""
    return "".join(pick(rng, LETTERS) for _ in range(int(rng.integers(lo, hi))))


@lru_cache(maxsize=8)
def load_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A real TrueType font (matplotlib ships DejaVu); Pillow's built-in one otherwise."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default(size=size)
