"""Where a sequence is played: one arena's crowd, advertising boards and court, as a panorama.

Each sequence gets its own arena, so the background tells sequences apart but never players.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from reid.synthetic.palette import FONTS, SKIN, hsv, load_font, pick, word


@dataclass(frozen=True)
class Scene:
    """The background of one sequence at a scale where a person is `PERSON` pixels tall."""

    panorama: Image.Image
    floor_top: int
    gain: float
    cast: tuple[float, float, float]
    blur: float  # the broadcast camera's softness, in pixels of a 120-pixel-tall crop
    noise: float  # its sensor noise (standard deviation, 0-255 scale)
    quality: int  # its JPEG quality, give or take a few
    view: tuple[float, float]  # where the camera looks: left edge and top of a VIEW × BAND stretch of floor


PERSON = 200
PANORAMA = (2400, 960)
VIEW, BAND = 450.0, 300.0  # the stretch of court a sequence's players stand on, in panorama pixels


def _crowd(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, top: int) -> None:
    """Spectators: heads over shirts, their size and density an arena's own."""
    n_heads = int(rng.integers(2000, 7000))
    xs, ys = rng.uniform(0, width, n_heads), rng.uniform(-10, top, n_heads)
    lo = rng.uniform(2, 5)
    sizes = rng.uniform(lo, lo * 1.6, n_heads)
    tones = rng.integers(0, len(SKIN), n_heads)
    shirts = rng.integers(20, 160, (n_heads, 3)) + rng.integers(0, 60, (n_heads, 1))
    for x, y, s, t, c in zip(xs, ys, sizes, tones, shirts, strict=True):
        draw.ellipse([x - s, y + s, x + s, y + 3 * s], fill=tuple(int(v) for v in c))
        draw.ellipse([x - 0.55 * s, y - 0.2 * s, x + 0.55 * s, y + 1.1 * s], fill=tuple(int(v) for v in SKIN[t]))


def _boards(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, top: int, bottom: int) -> None:
    """Advertising boards in one of three styles: sponsors' panels, an LED strip or stripes."""
    style = pick(rng, ("panels", "led", "stripes"))
    palette = [hsv(rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.8)) for _ in range(3)]
    font = load_font(pick(rng, FONTS), int((bottom - top) * rng.uniform(0.45, 0.8)))
    x = 0
    while x < width:
        seg = int(rng.integers(200, 600))
        if style == "stripes":
            draw.rectangle([x, top, x + seg, bottom], fill=palette[0])
            step = int(rng.integers(10, 30))
            for sx in range(x - (bottom - top), x + seg, step):
                draw.polygon([(sx, bottom), (sx + step // 2, bottom), (sx + step // 2 + bottom - top, top),
                              (sx + bottom - top, top)], fill=palette[1])
        else:
            led = style == "led"
            draw.rectangle([x, top, x + seg, bottom], fill=(15, 15, 20) if led else pick(rng, palette))
            text = word(rng, 3, 8)
            draw.text((x + seg / 2, (top + bottom) / 2), text, anchor="mm", font=font,
                      fill=palette[2] if led else hsv(rng.random(), rng.uniform(0, 0.5), 1.0))
        x += seg


def _floor(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Wooden or painted boards: plank width, contrast and laying (along, across, parquet) vary by arena."""
    if rng.random() < 0.7:
        wood = np.array(hsv(rng.uniform(0.05, 0.11), rng.uniform(0.3, 0.65), rng.uniform(0.5, 0.92)), dtype=np.float32)
    else:  # a painted court
        wood = np.array(hsv(rng.random(), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)), dtype=np.float32)
    plank, contrast = int(rng.integers(6, 36)), rng.uniform(0.1, 0.25)
    laying = pick(rng, ("along", "along", "across", "parquet"))
    columns = 1 + rng.normal(0, contrast, width // plank + 1).repeat(plank)[:width]
    rows = 1 + rng.normal(0, contrast, height // plank + 1).repeat(plank)[:height]
    if laying == "along":
        shade = np.broadcast_to(columns[None, :], (height, width))
    elif laying == "across":
        shade = np.broadcast_to(rows[:, None], (height, width))
    else:  # blocks of planks, alternately laid
        block = plank * 4
        yy, xx = np.indices((height, width))
        shade = np.where((yy // block + xx // block) % 2 == 0, columns[None, :], rows[:, None])
    grain = 1 + rng.normal(0, 0.01, (height, width))
    return np.clip(wood[None, None] * (shade * grain)[..., None], 0, 255).astype(np.uint8)


def scene(rng: np.random.Generator) -> Scene:
    """Crowd, advertising boards and a wooden court with painted lines: one arena's look."""
    w, h = PANORAMA
    boards_top = int(rng.integers(150, 240))
    floor_top = boards_top + int(rng.integers(30, 60))
    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    base = rng.uniform(15, 70)
    draw.rectangle([0, 0, w, boards_top], fill=(int(base), int(base * 0.9), int(base * 1.1)))
    _crowd(draw, rng, w, boards_top)
    img = img.filter(ImageFilter.GaussianBlur(1.5))
    draw = ImageDraw.Draw(img)
    _boards(draw, rng, w, boards_top, floor_top)
    img.paste(Image.fromarray(_floor(rng, w, h - floor_top)), (0, floor_top))
    draw = ImageDraw.Draw(img)
    paint = hsv(rng.random(), rng.uniform(0.2, 0.6), rng.uniform(0.4, 0.8))
    key_x = rng.uniform(0, w - 600)
    key = [(key_x, h), (key_x + 250, floor_top + 40), (key_x + 650, floor_top + 40), (key_x + 600, h)]
    draw.polygon(key, fill=paint)
    line = (240, 240, 235)
    for _ in range(int(rng.integers(2, 5))):
        x0, x1 = rng.uniform(-400, w + 400, 2)
        draw.line([(x0, floor_top + rng.uniform(5, 60)), (x1, h)], fill=line, width=int(rng.integers(3, 7)))
    y = floor_top + rng.uniform(15, 80)
    draw.line([(0, y), (w, y + rng.uniform(-30, 30))], fill=line, width=4)
    _decals(draw, rng, w, floor_top, h)
    grade = tuple(float(v) for v in rng.uniform(0.8, 1.2, 3))  # each arena and camera has its own colours
    return Scene(img, floor_top, float(rng.uniform(0.7, 1.25)), grade, blur=float(rng.uniform(0, 0.6)),
                 noise=float(rng.uniform(0.5, 2)), quality=int(rng.integers(70, 95)),
                 view=(float(rng.uniform(0, w - VIEW)),  # feet well below the boards: the crowd shows
                       float(rng.uniform(floor_top + 170, h - 5 - BAND))))  # only near the far side


def _decals(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, top: int, bottom: int) -> None:
    """The home club's name painted on the court, a few times over."""
    text = word(rng, 3, 7)
    font = load_font(pick(rng, FONTS), int(rng.integers(90, 200)))
    colour = hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))
    for _ in range(int(rng.integers(2, 6))):
        draw.text((rng.uniform(0, width), rng.uniform(top + 150, bottom)), text, anchor="mm", font=font, fill=colour)
