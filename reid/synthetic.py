"""Procedural basketball player crops in the official layout: an honest, labelled stand-in.

The real archive cannot be fetched everywhere (never in CI), yet every stage must run and be
measured from a fresh machine. `generate` writes, under `<data_dir>/data_reid/`:

- `reid_training/{player}_{sequence}_{frame}.jpeg`, `reid_test/{query,gallery}/...` (same
  naming; frame `00` is the query, frames `01`-`19` the gallery);
- `reid_challenge/{query,gallery}/{id}.jpeg` with anonymous integer ids, unique across query
  and gallery, and `reid_challenge/ground_truth.csv` with columns
  `img_id,player,sequence,frame,img_type` (`img_id` is the path relative to `data_reid/`, as in
  `challenge_df.csv`; `img_type` is `q` or `g`), so a challenge submission can be scored locally;
- `synthetic.json` (the marker: generator, size, seed, counts) and
  `synthetic_contact_sheet.png` (a few test players: the query, then gallery frames).

A sequence is 20 frames of 8-12 people in one arena (its own floor, boards, crowd, court
decals and camera softness, noise and compression), standing on the stretch of court its
camera follows: two teams in their kits, colours and a shirt design (teammates share the
jersey, so kit alone cannot separate them), sometimes referees. Identity lives in the jersey
number (front and back, drawn with a real font), skin, hair, build, shoes, socks and
accessories. Boxes hug the pose like a detector's; pose, viewpoint, scale, box margins,
occlusion, blur, spotlight and shadow gradients and JPEG quality change from frame to frame.
Player and sequence numbers are global: training players first, then test players, then
challenge players (whose numbers appear only in the ground truth).

Every sequence draws its randomness from (seed, split, sequence index) alone, so the files are
byte-identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import colorsys
import csv
import io
import json
import math
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from reid.data import GROUND_TRUTH
from reid.errors import ReidError

FRAMES = 20
SPLITS = ("train", "test", "challenge")
SEQUENCE_PEOPLE = (8, 12)
MARKER = "synthetic.json"
CONTACT_SHEET = "synthetic_contact_sheet.png"

# (players, images) per split. `full` is the 2023 edition; `small` is about a tenth, with
# three test sequences so that the test gallery still mixes sequences; `tiny` is for tests.
SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "tiny": {"train": (16, 240), "test": (8, 120), "challenge": (8, 120)},
    "small": {"train": (44, 860), "test": (30, 576), "challenge": (62, 1012)},
    "full": {"train": (436, 8569), "test": (50, 960), "challenge": (618, 10123)},
}

RGB = tuple[int, int, int]
T = TypeVar("T")


# ---------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Person:
    """One identity in one sequence and the files its crops go to, as (frame, relative path)."""

    player: int
    files: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class Sequence:
    split: str
    index: int  # within the split: with the seed, it fixes everything drawn in the sequence
    number: int  # global, as in the file names
    people: tuple[Person, ...]

    @property
    def n_images(self) -> int:
        return sum(len(p.files) for p in self.people)


@dataclass(frozen=True)
class Plan:
    size: str
    seed: int
    sequences: tuple[Sequence, ...]

    @property
    def n_images(self) -> int:
        return sum(s.n_images for s in self.sequences)

    def counts(self) -> dict[str, dict[str, int]]:
        """Players, queries (frame 00) and gallery images per split."""
        out = {}
        for split in SPLITS:
            people = [p for s in self.sequences if s.split == split for p in s.people]
            queries = sum(1 for p in people for frame, _ in p.files if frame == 0)
            images = sum(len(p.files) for p in people)
            out[split] = {"players": len(people), "queries": queries, "gallery": images - queries}
        return out


def sequence_sizes(players: int, rng: np.random.Generator) -> list[int]:
    """People per sequence, each within SEQUENCE_PEOPLE, summing to `players` exactly."""
    lo, hi = SEQUENCE_PEOPLE
    n = max(math.ceil(players / hi), min(round(players / 10), players // lo))
    if not lo * n <= players <= hi * n:
        raise ReidError(f"cannot split {players} players into sequences of {lo}-{hi} people")
    sizes = np.full(n, lo)
    for _ in range(players - lo * n):
        sizes[rng.choice(np.flatnonzero(sizes < hi))] += 1
    return sizes.tolist()


def _kept_frames(players: int, images: int, rng: np.random.Generator) -> np.ndarray:
    """(players, FRAMES) bool: frame 00 always, then `images - players` gallery frames at random."""
    gallery_slots = players * (FRAMES - 1)
    if not players <= images <= players * FRAMES:
        raise ReidError(f"{images} images do not fit {players} players of {FRAMES} frames")
    kept = np.zeros(gallery_slots, dtype=bool)
    kept[rng.choice(gallery_slots, images - players, replace=False)] = True
    return np.hstack([np.ones((players, 1), dtype=bool), kept.reshape(players, FRAMES - 1)])


def _labelled_path(split: str, player: int, sequence: int, frame: int, widths: tuple[int, int]) -> str:
    name = f"{player:0{widths[0]}d}_{sequence:0{widths[1]}d}_{frame:02d}.jpeg"
    if split == "train":
        return f"reid_training/{name}"
    return f"reid_test/{'query' if frame == 0 else 'gallery'}/{name}"


def plan(size: str = "small", seed: int = 0) -> Plan:
    """Every sequence, person and file name of a dataset, without rendering anything."""
    if size not in SIZES:
        raise ReidError(f"unknown synthetic size {size!r}; choose one of {', '.join(SIZES)}")
    layout = []  # (split, sizes, kept frames)
    for split_no, split in enumerate(SPLITS):
        players, images = SIZES[size][split]
        rng = np.random.default_rng([seed, split_no, 0])
        layout.append((split, sequence_sizes(players, rng), _kept_frames(players, images, rng)))
    named = [lay for lay in layout if lay[0] != "challenge"]
    widths = (max(3, len(str(sum(sum(s) for _, s, _ in named) - 1))),
              max(2, len(str(sum(len(s) for _, s, _ in named) - 1))))
    n_challenge = int(layout[-1][2].sum())
    challenge_ids = iter(np.random.default_rng([seed, len(SPLITS), 0]).permutation(n_challenge).tolist())
    sequences, player, number = [], 0, 0
    for split, sizes, kept in layout:
        row = 0
        for index, n_people in enumerate(sizes):
            people = []
            for _ in range(n_people):
                frames = np.flatnonzero(kept[row]).tolist()
                if split == "challenge":
                    files = tuple((f, f"reid_challenge/{'query' if f == 0 else 'gallery'}/{next(challenge_ids)}.jpeg")
                                  for f in frames)
                else:
                    files = tuple((f, _labelled_path(split, player, number, f, widths)) for f in frames)
                people.append(Person(player, files))
                player, row = player + 1, row + 1
            sequences.append(Sequence(split, index, number, tuple(people)))
            number += 1
    return Plan(size, seed, tuple(sequences))


# ------------------------------------------------------------------------ identities and kits


@dataclass(frozen=True)
class Kit:
    shirt: RGB
    shorts: RGB
    trim: RGB
    digits: RGB
    font: str
    names: bool  # surnames above the back number
    referee: bool = False  # long trousers, black shoes, a small number
    pattern: str = "plain"  # the shirt's design, in the trim colour


@dataclass(frozen=True)
class Look:
    """Everything that stays with a person through a sequence: what re-identification reads."""

    kit: Kit
    number: str
    name: str
    skin: RGB
    hair_style: str
    hair: RGB
    beard: bool
    build: float  # width of shoulders, hips and limbs
    legs: float  # leg length relative to the body
    head: float
    shoes: RGB
    sole: RGB
    socks: RGB
    sock_height: float  # fraction of the shin
    headband: RGB | None
    undershirt: RGB | None
    arm_sleeve: tuple[int, RGB] | None  # (side 0/1, colour)
    leg_sleeve: tuple[int, RGB, float] | None  # (side, colour, down to this fraction of the leg)
    knee_pad: tuple[int, RGB] | None
    wrist_tape: tuple[int, RGB] | None
    tattoos: tuple[tuple[int, float, float, float], ...]  # (limb: 0/1 arms, 2/3 legs, along, across, size)


SKIN = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 96),
                 (160, 102, 66), (120, 76, 48), (92, 58, 38), (66, 42, 30)], dtype=float)
HAIR = [(20, 16, 14), (45, 30, 22), (85, 55, 35), (130, 90, 55), (200, 165, 100),
        (150, 70, 35), (170, 170, 170)]
HAIR_STYLES = ("bald", "buzz", "short", "short", "afro", "long", "bun", "braids")
ACCESSORY = [(245, 245, 245), (20, 20, 20), (200, 30, 40), (30, 60, 180), (240, 200, 40),
             (60, 170, 90), (240, 120, 30)]
SHOES = [(245, 245, 245), (20, 20, 22), (200, 30, 40), (40, 80, 200), (250, 220, 40),
         (80, 200, 120), (250, 120, 170), (150, 150, 155), (240, 120, 30)]
FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSans.ttf")
LETTERS = "ABCDEFGHIJKLMNOPRSTUVWYZ"
PATTERNS = ("plain", "pinstripes", "hoops", "panels", "sash", "checks")
N_TEAMS = 64
NUMBERS = ["00"] + [str(i) for i in range(100)]


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _pick(rng: np.random.Generator, items: list[T] | tuple[T, ...]) -> T:
    return items[int(rng.integers(len(items)))]


def _word(rng: np.random.Generator, lo: int, hi: int) -> str:
    """Random capitals (a surname, a sponsor, a club), lo to hi - 1 of them: length first, then letters."""
    return "".join(_pick(rng, LETTERS) for _ in range(int(rng.integers(lo, hi))))


@lru_cache(maxsize=4)
def league(seed: int) -> tuple[tuple[Kit, Kit], ...]:
    """(home, away) kits of the teams every sequence draws from: kits recur across sequences."""
    rng = np.random.default_rng([seed, len(SPLITS) + 1])
    teams = []
    for _ in range(N_TEAMS):
        hue = rng.random()
        colour = _hsv(hue, rng.uniform(0.55, 1.0), rng.uniform(0.35, 0.9))
        second = _hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0))
        if rng.random() < 0.35:  # the classic white home kit
            light = tuple(int(v) for v in rng.integers(225, 256, 3))
        else:
            light = _hsv(hue + rng.uniform(0.25, 0.75), rng.uniform(0.2, 0.6), rng.uniform(0.75, 1.0))
        font, names, pattern = _pick(rng, FONTS), bool(rng.random() < 0.5), _pick(rng, PATTERNS)
        home = Kit(light, light if rng.random() < 0.8 else colour, colour, colour, font, names, pattern=pattern)
        away = Kit(colour, colour if rng.random() < 0.8 else second, second, light, font, names, pattern=pattern)
        teams.append((home, away))
    return tuple(teams)


REFEREE = Kit((150, 150, 150), (25, 25, 25), (20, 20, 20), (20, 20, 20), FONTS[0], False, True, "pinstripes")


def _look(rng: np.random.Generator, kit: Kit, number: str) -> Look:
    """A random person in `kit`: the identity cues are drawn independently of each other."""
    tone = rng.uniform(0, len(SKIN) - 1)
    lo = int(tone)
    skin = SKIN[lo] + (SKIN[min(lo + 1, len(SKIN) - 1)] - SKIN[lo]) * (tone - lo)
    style = _pick(rng, HAIR_STYLES)

    def maybe(p: float) -> bool:
        return rng.random() < p

    team = ACCESSORY[:2] + [kit.trim]  # the league's rule: gear in white, black or the team's colour

    return Look(
        kit=kit,
        number=number,
        name=_word(rng, 4, 9),
        skin=tuple(int(v) for v in skin),
        hair_style=style,
        hair=_pick(rng, HAIR),
        beard=bool(maybe(0.3)),
        build=float(rng.uniform(0.8, 1.3)),
        legs=float(rng.uniform(0.92, 1.08)),
        head=float(rng.uniform(0.88, 1.12)),
        shoes=(20, 20, 20) if kit.referee else _pick(rng, SHOES),
        sole=_pick(rng, [(245, 245, 245), (20, 20, 20), (180, 140, 90)]),
        socks=_pick(rng, [(245, 245, 245), (245, 245, 245), (20, 20, 20), kit.shirt, kit.trim]),
        sock_height=float(_pick(rng, [0.12, 0.35, 0.55, 0.8])),
        headband=_pick(rng, team) if maybe(0.4) else None,
        undershirt=_pick(rng, [(245, 245, 245), (20, 20, 20), kit.trim]) if maybe(0.4) and not kit.referee else None,
        arm_sleeve=(int(rng.integers(2)), _pick(rng, team)) if maybe(0.5) else None,
        leg_sleeve=(int(rng.integers(2)), _pick(rng, team), float(rng.uniform(0.5, 1.0)))
        if maybe(0.4) and not kit.referee else None,
        knee_pad=(int(rng.integers(2)), _pick(rng, ACCESSORY[:2])) if maybe(0.4) and not kit.referee else None,
        wrist_tape=(int(rng.integers(2)), _pick(rng, team)) if maybe(0.5) else None,
        tattoos=tattoos(rng) if maybe(0.5) else (),
    )


def tattoos(rng: np.random.Generator) -> tuple[tuple[int, float, float, float], ...]:
    """Ink marks on one to three limbs: a texture that stays with the player whatever the pose."""
    limbs = rng.choice(4, int(rng.integers(1, 4)), replace=False, p=[0.35, 0.35, 0.15, 0.15])
    marks = []
    for limb in limbs:
        n = int(rng.integers(6, 16))
        marks += zip([int(limb)] * n, rng.uniform(0.1, 0.95, n).tolist(), rng.uniform(-0.35, 0.35, n).tolist(),
                     rng.uniform(0.12, 0.35, n).tolist())
    return tuple(marks)


def cast(rng: np.random.Generator, n_people: int, seed: int) -> list[Look]:
    """The people of one sequence: sometimes referees, the rest split between two teams."""
    referees = int(rng.choice([0, 0, 1, 1, 2])) if n_people > 8 else int(rng.integers(2))
    players = n_people - referees
    home, away = (int(i) for i in rng.choice(N_TEAMS, 2, replace=False))
    sizes = [players // 2, players - players // 2]
    rng.shuffle(sizes)
    looks = []
    for team, size in zip((league(seed)[home][0], league(seed)[away][1]), sizes):
        numbers = rng.choice(len(NUMBERS), size, replace=False)
        looks += [_look(rng, team, NUMBERS[n]) for n in numbers]
    looks += [_look(rng, REFEREE, str(int(rng.integers(1, 80)))) for _ in range(referees)]
    return [looks[i] for i in rng.permutation(len(looks))]


# ------------------------------------------------------------------------------- the scenes


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
    view: tuple[float, float]  # where the camera looks this sequence: left edge and top of a VIEW × BAND stretch of floor


PERSON = 200
PANORAMA = (2400, 960)
VIEW, BAND = 450.0, 300.0  # the stretch of court a sequence's players stand on, in panorama pixels


@lru_cache(maxsize=8)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A real TrueType font (matplotlib ships DejaVu); Pillow's built-in one otherwise."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default(size=size)


def _crowd(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, top: int) -> None:
    """Spectators: heads over shirts, their size and density an arena's own."""
    n_heads = int(rng.integers(2000, 7000))
    xs, ys = rng.uniform(0, width, n_heads), rng.uniform(-10, top, n_heads)
    lo = rng.uniform(2, 5)
    sizes = rng.uniform(lo, lo * 1.6, n_heads)
    tones = rng.integers(0, len(SKIN), n_heads)
    shirts = rng.integers(20, 160, (n_heads, 3)) + rng.integers(0, 60, (n_heads, 1))
    for x, y, s, t, c in zip(xs, ys, sizes, tones, shirts):
        draw.ellipse([x - s, y + s, x + s, y + 3 * s], fill=tuple(int(v) for v in c))
        draw.ellipse([x - 0.55 * s, y - 0.2 * s, x + 0.55 * s, y + 1.1 * s], fill=tuple(int(v) for v in SKIN[t]))


def _boards(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, top: int, bottom: int) -> None:
    """Advertising boards in one of three styles: sponsors' panels, an LED strip or stripes."""
    style = _pick(rng, ("panels", "led", "stripes"))
    palette = [_hsv(rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.8)) for _ in range(3)]
    font = _font(_pick(rng, FONTS), int((bottom - top) * rng.uniform(0.45, 0.8)))
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
            draw.rectangle([x, top, x + seg, bottom], fill=(15, 15, 20) if led else _pick(rng, palette))
            text = _word(rng, 3, 8)
            draw.text((x + seg / 2, (top + bottom) / 2), text, anchor="mm", font=font,
                      fill=palette[2] if led else _hsv(rng.random(), rng.uniform(0, 0.5), 1.0))
        x += seg


def _floor(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Wooden or painted boards: plank width, contrast and laying (along, across, parquet) vary by arena."""
    if rng.random() < 0.7:
        wood = np.array(_hsv(rng.uniform(0.05, 0.11), rng.uniform(0.3, 0.65), rng.uniform(0.5, 0.92)), dtype=np.float32)
    else:  # a painted court
        wood = np.array(_hsv(rng.random(), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)), dtype=np.float32)
    plank, contrast = int(rng.integers(6, 36)), rng.uniform(0.1, 0.25)
    laying = _pick(rng, ("along", "along", "across", "parquet"))
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
    paint = _hsv(rng.random(), rng.uniform(0.2, 0.6), rng.uniform(0.4, 0.8))
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
    text = _word(rng, 3, 7)
    font = _font(_pick(rng, FONTS), int(rng.integers(90, 200)))
    colour = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))
    for _ in range(int(rng.integers(2, 6))):
        draw.text((rng.uniform(0, width), rng.uniform(top + 150, bottom)), text, anchor="mm", font=font, fill=colour)


# ------------------------------------------------------------------------------ the figures


@dataclass(frozen=True)
class Pose:
    facing: str  # front, back, left, right
    phase: float  # gait phase
    stride: float  # leg swing amplitude (radians)
    bend: float  # knee bend (radians)
    turn: float  # torso width factor: 1 square to the camera, less when turned
    arms: tuple[float, float]  # raise of each arm: 0 hanging, about 2.5 straight up


FACINGS = ("front", "back", "left", "right")
FACING_P = (0.4, 0.35, 0.125, 0.125)
GAIT_P = (0.35, 0.3, 0.15, 0.2)  # running, walking, standing, defending
CHANGE_P = 0.03  # chance that a person faces another way, or moves another way, than in the previous frame


def next_action(rng: np.random.Generator, action: tuple[str, int] | None) -> tuple[str, int]:
    """(facing, gait) persist over frames: a player keeps running the same way for a while."""
    facing = str(rng.choice(FACINGS, p=FACING_P))
    gait = int(rng.choice(len(GAIT_P), p=GAIT_P))
    if action is None:
        return facing, gait
    keep = rng.random(2) >= CHANGE_P
    return (action[0] if keep[0] else facing), (action[1] if keep[1] else gait)


def random_pose(rng: np.random.Generator, action: tuple[str, int] | None = None) -> Pose:
    """Running, walking, standing or defending, seen from the front, back or side."""
    facing, gait = action or next_action(rng, None)
    stride, bend = [(0.55, 0.6), (0.3, 0.25), (0.05, 0.1), (0.15, 0.7)][gait]
    arms = rng.uniform(0.1, 0.5, 2)
    if gait == 3:
        arms = rng.uniform(0.5, 1.2, 2)
    if rng.random() < 0.06:
        arms[int(rng.integers(2))] = rng.uniform(2.0, 2.8)
    return Pose(
        facing=facing,
        phase=float(rng.uniform(0, 2 * np.pi)),
        stride=float(stride * rng.uniform(0.7, 1.3)),
        bend=float(bend * rng.uniform(0.7, 1.3)),
        turn=float(rng.uniform(0.65, 1.0)),
        arms=(float(arms[0]), float(arms[1])),
    )


def _shade(colour: RGB, factor: float) -> RGB:
    return tuple(int(min(255, c * factor)) for c in colour)


def _limb(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], width: float, colour: RGB) -> None:
    """A thick polyline with round joints."""
    w = max(1.0, width)
    draw.line(points, fill=colour, width=max(1, round(w)))
    for x, y in points:
        draw.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=colour)


def _lerp(p: tuple[float, float], q: tuple[float, float], t: float) -> tuple[float, float]:
    return p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t


def _legs(look: Look, pose: Pose, x: float, hip_y: float, hw: float, h: float) -> list[list[tuple[float, float]]]:
    """[hip, knee, ankle, toe] of the two legs in image order (left first)."""
    thigh, shin = 0.235 * h * look.legs, 0.215 * h * look.legs
    side = pose.facing in ("left", "right")
    direction = 1 if pose.facing == "right" else -1
    legs = []
    for k in (0, 1):
        swing = pose.stride * math.sin(pose.phase + k * math.pi)
        bend = pose.bend * (0.4 + 0.6 * max(0.0, math.sin(pose.phase + k * math.pi + math.pi / 2)))
        hip = (x + (2 * k - 1) * hw * (0.2 if side else 0.55), hip_y)
        if side:
            knee = (hip[0] + direction * thigh * math.sin(swing), hip[1] + thigh * math.cos(swing))
            ankle = (knee[0] + direction * shin * math.sin(swing - bend), knee[1] + shin * math.cos(swing - bend))
            toe = (ankle[0] + direction * 0.07 * h, ankle[1] + 0.02 * h)
        else:
            spread = (2 * k - 1) * (0.02 * h + 0.06 * h * bend)
            knee = (hip[0] + spread, hip[1] + thigh * math.cos(swing) * math.cos(bend * 0.5))
            ankle = (knee[0] + spread * 0.3, knee[1] + shin * math.cos(swing - bend) * math.cos(bend * 0.5))
            toe = (ankle[0] + (2 * k - 1) * 0.01 * h, ankle[1] + 0.025 * h)
        legs.append([hip, knee, ankle, toe])
    return legs


def _arms(look: Look, pose: Pose, x: float, sh_y: float, sw: float, h: float) -> list[list[tuple[float, float]]]:
    """[shoulder, elbow, wrist] of the two arms in image order."""
    upper, fore = 0.16 * h, 0.15 * h
    side = pose.facing in ("left", "right")
    direction = 1 if pose.facing == "right" else -1
    arms = []
    for k in (0, 1):
        outward = 2 * k - 1
        shoulder = (x + outward * sw * (0.25 if side else 0.92), sh_y + 0.015 * h)
        if side:
            angle = -0.9 * pose.stride * math.sin(pose.phase + k * math.pi) + 0.6 * pose.arms[k]
            elbow = (shoulder[0] + direction * upper * math.sin(angle), shoulder[1] + upper * math.cos(angle))
            bend = angle + 0.3 + 0.8 * pose.stride
            wrist = (elbow[0] + direction * fore * math.sin(bend), elbow[1] + fore * math.cos(bend))
        else:
            angle = 0.12 + pose.arms[k]
            elbow = (shoulder[0] + outward * upper * math.sin(angle), shoulder[1] + upper * math.cos(angle))
            bend = angle * (0.6 if pose.arms[k] < 1.5 else 1.0) - 0.2
            wrist = (elbow[0] + outward * fore * math.sin(bend), elbow[1] + fore * math.cos(bend))
        arms.append([shoulder, elbow, wrist])
    return arms


def _draw_tattoos(draw: ImageDraw.ImageDraw, look: Look, limb: int, points: list, thick: float, dim: float) -> None:
    """The player's ink marks on one limb, placed along its polyline."""
    ink = _shade(tuple((s + 2 * d) // 3 for s, d in zip(look.skin, (30, 40, 70))), 0.55 * dim)
    segments = len(points) - 1
    for which, along, across, size in look.tattoos:
        if which != limb:
            continue
        i = min(int(along * segments), segments - 1)
        (x0, y0), (x1, y1) = points[i], points[i + 1]
        t = along * segments - i
        length = math.hypot(x1 - x0, y1 - y0) or 1.0
        nx, ny = -(y1 - y0) / length, (x1 - x0) / length
        cx, cy = x0 + (x1 - x0) * t + nx * across * thick, y0 + (y1 - y0) * t + ny * across * thick
        r = size * thick * 0.5
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=ink)


def _draw_leg(draw: ImageDraw.ImageDraw, look: Look, leg: list, k: int, h: float, dim: float) -> None:
    hip, knee, ankle, toe = leg
    thick = 0.078 * h * look.build
    kit = look.kit
    if kit.referee:
        _limb(draw, [hip, knee, ankle], thick * 1.25, _shade(kit.shorts, dim))
    else:
        _limb(draw, [hip, knee], thick, _shade(look.skin, dim))
        _limb(draw, [knee, ankle], thick * 0.8, _shade(look.skin, dim))
        _draw_tattoos(draw, look, 2 + k, [knee, ankle], thick * 0.8, dim)
        if look.leg_sleeve and look.leg_sleeve[0] == k:
            _, colour, length = look.leg_sleeve
            if length > 0.5:
                covered = [hip, knee, _lerp(knee, ankle, 2 * length - 1)]
            else:
                covered = [hip, _lerp(hip, knee, 2 * length)]
            _limb(draw, covered, thick * 1.05, _shade(colour, dim))
        if look.knee_pad and look.knee_pad[0] == k:
            _limb(draw, [_lerp(knee, hip, 0.12), _lerp(knee, ankle, 0.15)], thick * 1.2, _shade(look.knee_pad[1], dim))
        _limb(draw, [ankle, _lerp(ankle, knee, look.sock_height)], thick * 0.85, _shade(look.socks, dim))
    _limb(draw, [ankle, toe], 0.055 * h, _shade(look.shoes, dim))
    sole = [(ankle[0], ankle[1] + 0.02 * h), (toe[0], toe[1] + 0.018 * h)]
    draw.line(sole, fill=_shade(look.sole, dim), width=max(1, round(0.012 * h)))


def _draw_arm(draw: ImageDraw.ImageDraw, look: Look, arm: list, k: int, h: float, dim: float) -> None:
    shoulder, elbow, wrist = arm
    thick = 0.058 * h * look.build
    skin = _shade(look.skin, dim)
    _limb(draw, [shoulder, elbow, wrist], thick, skin)
    _draw_tattoos(draw, look, k, [shoulder, elbow, wrist], thick, dim)
    if look.kit.referee:
        _limb(draw, [shoulder, _lerp(shoulder, elbow, 0.6)], thick * 1.3, _shade(look.kit.shirt, dim))
    elif look.undershirt:
        _limb(draw, [shoulder, _lerp(shoulder, elbow, 0.5)], thick * 1.2, _shade(look.undershirt, dim))
    if look.arm_sleeve and look.arm_sleeve[0] == k:
        covered = [_lerp(shoulder, elbow, 0.3), elbow, _lerp(elbow, wrist, 0.9)]
        _limb(draw, covered, thick * 1.02, _shade(look.arm_sleeve[1], dim))
    if look.wrist_tape and look.wrist_tape[0] == k:
        _limb(draw, [_lerp(elbow, wrist, 0.82), wrist], thick * 1.1, _shade(look.wrist_tape[1], dim))
    r = thick * 0.7
    hand = _lerp(elbow, wrist, 1.12)
    draw.ellipse([hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r], fill=skin)


def _draw_torso(draw: ImageDraw.ImageDraw, look: Look, pose: Pose, x: float, sh_y: float, hip_y: float,
                sw: float, hw: float, h: float) -> None:
    kit = look.kit
    neck = 0.045 * h * (pose.turn if pose.facing in ("front", "back") else 0.6)
    waist = hip_y - 0.02 * h
    if not kit.referee:
        draw.polygon([(x - hw * 1.15, waist), (x + hw * 1.15, waist), (x + hw * 1.3, hip_y + 0.2 * h),
                      (x + 0.01 * h, hip_y + 0.19 * h), (x, hip_y + 0.1 * h), (x - 0.01 * h, hip_y + 0.19 * h),
                      (x - hw * 1.3, hip_y + 0.2 * h)], fill=kit.shorts)
        for s in (-1, 1):
            draw.line([(x + s * hw * 1.17, waist), (x + s * hw * 1.3, hip_y + 0.2 * h)], fill=kit.trim,
                      width=max(1, round(0.015 * h)))
    shoulders = [(x - sw * 0.95, sh_y + 0.01 * h), (x + sw * 0.95, sh_y + 0.01 * h)]
    for sx, sy in shoulders:
        r = 0.035 * h * look.build
        fill = look.undershirt or (kit.shirt if kit.referee else look.skin)
        draw.ellipse([sx - r, sy - r * 0.6, sx + r, sy + r * 1.2], fill=fill)
    body = [(x - neck, sh_y - 0.015 * h), (x - sw * 0.7, sh_y - 0.005 * h), (x - sw * 0.8, sh_y + 0.1 * h),
            (x - hw * 1.12, waist + 0.02 * h), (x + hw * 1.12, waist + 0.02 * h), (x + sw * 0.8, sh_y + 0.1 * h),
            (x + sw * 0.7, sh_y - 0.005 * h), (x + neck, sh_y - 0.015 * h)]
    draw.polygon(body, fill=kit.shirt)
    _draw_pattern(draw, kit.pattern, kit.trim, x, (sh_y + 0.03 * h, waist + 0.02 * h),
                  (sw * 0.78, hw * 1.1), h)
    neck_line = [(x - neck, sh_y - 0.015 * h), (x, sh_y + (0.045 if pose.facing == "front" else 0.01) * h),
                 (x + neck, sh_y - 0.015 * h)]
    draw.polygon(neck_line, fill=look.undershirt or look.skin)
    draw.line(neck_line, fill=kit.trim, width=max(1, round(0.012 * h)))


def _draw_pattern(draw: ImageDraw.ImageDraw, pattern: str, colour: RGB, x: float, ys: tuple[float, float],
                  halves: tuple[float, float], h: float) -> None:
    """The shirt's design inside the torso, whose half-width runs from `halves[0]` at the top
    to `halves[1]` at the waist: a team cue of texture rather than colour."""
    (y0, y1), (a, b) = ys, halves

    def at(u: float, v: float) -> tuple[float, float]:  # u across (-1..1), v down (0..1)
        return x + u * (a + (b - a) * v), y0 + (y1 - y0) * v

    line = max(1, round(0.014 * h))
    if pattern in ("pinstripes", "checks"):
        for u in np.linspace(-0.85, 0.85, 7 if pattern == "pinstripes" else 5):
            draw.line([at(u, 0), at(u, 1)], fill=colour, width=line)
    if pattern in ("hoops", "checks"):
        for v in np.linspace(0.15, 0.85, 4):
            d = 0.06 if pattern == "hoops" else 0.025
            draw.polygon([at(-1, v - d), at(1, v - d), at(1, v + d), at(-1, v + d)], fill=colour)
    if pattern == "panels":
        for s in (-1, 1):
            draw.polygon([at(s * 0.62, 0), at(s, 0), at(s, 1), at(s * 0.62, 1)], fill=colour)
    if pattern == "sash":
        draw.polygon([at(-1, 0), at(-0.55, 0), at(1, 0.75), at(1, 1), at(0.75, 1), at(-1, 0.3)], fill=colour)


def _draw_number(draw: ImageDraw.ImageDraw, look: Look, pose: Pose, x: float, sh_y: float, h: float) -> None:
    """The jersey number: small on the chest, large on the back (with the surname above)."""
    kit = look.kit
    if pose.facing not in ("front", "back"):
        return
    back = pose.facing == "back"
    size = int(h * (0.15 if back else 0.09) * (0.6 if kit.referee else 1.0) * pose.turn)
    if size < 4:
        return
    cy = sh_y + (0.15 if back else 0.11) * h
    font = _font(kit.font, size)
    draw.text((x, cy), look.number, fill=kit.digits, font=font, anchor="mm",
              stroke_width=max(0, round(size * 0.05)), stroke_fill=kit.trim)
    name_size = int(h * 0.035 * pose.turn)
    if back and kit.names and name_size >= 4:
        draw.text((x, sh_y + 0.055 * h), look.name, fill=kit.digits, font=_font(kit.font, name_size), anchor="mm")


def _draw_head(draw: ImageDraw.ImageDraw, look: Look, pose: Pose, x: float, sh_y: float, h: float) -> None:
    rx, ry = 0.052 * h * look.head, 0.066 * h * look.head
    cy = sh_y - 0.035 * h - ry
    side = pose.facing in ("left", "right")
    direction = 1 if pose.facing == "right" else -1
    cx = x + (direction * 0.01 * h if side else 0)
    hair, style = look.hair, look.hair_style
    if style == "afro":
        draw.ellipse([cx - rx * 1.45, cy - ry * 1.45, cx + rx * 1.45, cy + ry * 0.9], fill=hair)
    elif style in ("long", "braids"):
        draw.rounded_rectangle([cx - rx * 1.15, cy - ry * 1.05, cx + rx * 1.15, sh_y + 0.06 * h], radius=rx, fill=hair)
    _limb(draw, [(x, sh_y), (cx, cy + ry * 0.6)], 0.05 * h * look.build, look.skin)
    head = [cx - rx, cy - ry, cx + rx, cy + ry]
    draw.ellipse(head, fill=look.skin)
    if pose.facing == "back" and style != "bald":
        draw.ellipse([cx - rx * 1.04, cy - ry * 1.06, cx + rx * 1.04, cy + ry * 0.75], fill=hair)
    elif style == "buzz":
        draw.chord([cx - rx, cy - ry * 1.02, cx + rx, cy + ry * 0.4], 180, 360, fill=hair)
    elif style in ("short", "bun", "long", "braids"):
        start, end = (140, 400) if not side else ((160, 350) if direction > 0 else (190, 380))
        draw.chord([cx - rx * 1.06, cy - ry * 1.08, cx + rx * 1.06, cy + ry * 0.6], start, end, fill=hair)
    if style == "bun":
        r = rx * 0.45
        draw.ellipse([cx - r, cy - ry * 1.05 - 1.6 * r, cx + r, cy - ry * 1.05 + 0.4 * r], fill=hair)
    if style == "braids":
        for i in (-1, 0, 1):
            bx = cx + i * rx * 0.6
            draw.line([(bx, cy), (bx, sh_y + 0.07 * h)], fill=_shade(hair, 1.6), width=max(1, round(0.008 * h)))
    if pose.facing == "front":
        if look.beard:
            draw.chord([cx - rx * 0.95, cy - ry * 0.1, cx + rx * 0.95, cy + ry * 1.02], 0, 180, fill=_shade(hair, 1.2))
        for s in (-1, 1):
            ex, ey, er = cx + s * rx * 0.38, cy - ry * 0.05, max(0.5, 0.008 * h)
            draw.ellipse([ex - er, ey - er, ex + er, ey + er], fill=(25, 20, 20))
    elif side:
        nose = cx + direction * rx
        draw.polygon([(nose, cy - ry * 0.1), (nose + direction * 0.012 * h, cy + ry * 0.2), (nose, cy + ry * 0.3)],
                     fill=look.skin)
    if look.headband:
        top = cy - ry * 0.6
        draw.rectangle([cx - rx * 1.03, top, cx + rx * 1.03, top + ry * 0.28], fill=look.headband)


def _frame(look: Look, pose: Pose, feet: float, h: float) -> tuple[float, float, float, float]:
    """Shoulder and hip half-widths (narrower when turned from the camera), then hip and
    shoulder heights, of a figure `h` tall standing at `feet`."""
    width = 0.45 if pose.facing in ("left", "right") else pose.turn
    return (0.115 * h * look.build * width, 0.085 * h * look.build * width,
            feet - 0.05 * h - 0.45 * h * look.legs, feet - 0.815 * h)


def _extent(look: Look, pose: Pose) -> tuple[float, float]:
    """Leftmost and rightmost reach of the figure, in figure heights from its centre line."""
    sw, hw, hip_y, sh_y = _frame(look, pose, 0.0, 1.0)
    points = [p for limb in _legs(look, pose, 0.0, hip_y, hw, 1.0) + _arms(look, pose, 0.0, sh_y, sw, 1.0)
              for p in limb]
    xs = [p[0] for p in points]
    return min(min(xs) - 0.04, -1.3 * hw), max(max(xs) + 0.04, 1.3 * hw)


def draw_person(draw: ImageDraw.ImageDraw, look: Look, pose: Pose, x: float, feet: float, h: float) -> None:
    """A player `h` pixels tall, feet centred on (x, feet): legs, shorts, jersey, arms, head."""
    side = pose.facing in ("left", "right")
    sw, hw, hip_y, sh_y = _frame(look, pose, feet, h)
    legs = _legs(look, pose, x, hip_y, hw, h)
    arms = _arms(look, pose, x, sh_y, sw, h)
    near = 0 if pose.facing == "left" else 1
    if side:
        _draw_arm(draw, look, arms[1 - near], 1 - near, h, 0.8)
        _draw_leg(draw, look, legs[1 - near], 1 - near, h, 0.8)
        _draw_leg(draw, look, legs[near], near, h, 1.0)
    else:
        for k in (0, 1):
            _draw_leg(draw, look, legs[k], k, h, 1.0)
    _draw_torso(draw, look, pose, x, sh_y, hip_y, sw, hw, h)
    for k in ((near,) if side else (0, 1)):
        _draw_arm(draw, look, arms[k], k, h, 1.0)
    _draw_number(draw, look, pose, x, sh_y, h)
    _draw_head(draw, look, pose, x, sh_y, h)


# -------------------------------------------------------------------------------- the crops


def _motion_blur(img: np.ndarray, length: int) -> np.ndarray:
    """Horizontal box blur of `length` pixels (camera panning), by cumulative sums."""
    pad = np.pad(img, ((0, 0), (length // 2 + 1, length - length // 2), (0, 0)), mode="edge")
    c = np.cumsum(pad, axis=1, dtype=np.float32)
    return (c[:, length:length + img.shape[1]] - c[:, :img.shape[1]]) / length


def finish(img: Image.Image, size: tuple[int, int], scene: Scene, rng: np.random.Generator) -> bytes:
    """Downscale, then blur, lighting, noise and JPEG compression: the camera's nuisances."""
    if img.size != size:
        img = img.resize(size, Image.Resampling.BOX if img.size[1] >= 2 * size[1] else Image.Resampling.BILINEAR)
    blur = scene.blur * rng.uniform(0.7, 1.3) * size[1] / 120
    if blur > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.15:
        arr = _motion_blur(arr, int(rng.integers(2, max(3, size[0] // 12))))
    gain = scene.gain * rng.uniform(0.92, 1.08) * np.asarray(scene.cast, dtype=np.float32)
    ramp = 1 + rng.uniform(-0.4, 0.4) * np.linspace(-1, 1, size[0], dtype=np.float32)  # spotlights and shadow:
    drop = 1 + rng.uniform(-0.4, 0.4) * np.linspace(-1, 1, size[1], dtype=np.float32)  # raw pixels suffer, CNNs less
    arr = arr * gain[None, None, :] * ramp[None, :, None] * drop[:, None, None]
    arr = 255 * (np.clip(arr, 0, 255) / 255) ** rng.uniform(0.9, 1.1)
    arr += rng.normal(0, scene.noise * rng.uniform(0.7, 1.3), arr.shape).astype(np.float32)
    out = io.BytesIO()
    quality = int(np.clip(scene.quality + rng.integers(-5, 6), 30, 95))
    Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def render_crop(rng: np.random.Generator, scene: Scene, look: Look, pose: Pose, others: list[Look],
                height: int) -> bytes:
    """One detection crop of `look`: box size and offset, background, neighbours, nuisances."""
    fill = rng.uniform(0.75, 1.02)  # the figure's share of the box height
    left, right = _extent(look, pose)
    margins = rng.uniform(0, 0.16, 2)  # a detector's box hugs the pose, a little loosely on either side
    aspect = float(np.clip((right - left + margins.sum()) * fill, 0.3, 0.6))
    size = (max(12, round(height * aspect)), height)
    work_h = max(height, 160)
    work = (round(work_h * aspect), work_h)
    fig_h = work_h * fill
    truncated = rng.random() < 0.15
    feet = work_h * rng.uniform(0.97, 1.0) + (fig_h * rng.uniform(0.08, 0.3) if truncated and rng.random() < 0.6 else 0)
    x = work[0] * (0.5 + (rng.choice([-1, 1]) * rng.uniform(0.15, 0.3) if truncated else 0)) \
        - fig_h * ((left + right) + margins[1] - margins[0]) / 2
    scale = PERSON / fig_h
    ph = PANORAMA[1]
    px = scene.view[0] + rng.uniform(0, VIEW - work[0] * scale)
    pfeet = scene.view[1] + rng.uniform(0, BAND)
    top = max(0.0, min(pfeet - feet * scale, ph - work_h * scale))
    img = scene.panorama.resize(work, Image.Resampling.BILINEAR,
                                box=(px, top, px + work[0] * scale, top + work_h * scale))
    draw = ImageDraw.Draw(img)
    neighbours = [(o, rng.random() < 0.5) for o in others[:2] if rng.random() < 0.1]
    for other, behind in neighbours:
        if behind:
            draw_person(draw, other, random_pose(rng), x + rng.choice([-1, 1]) * rng.uniform(0.3, 0.8) * fig_h * 0.45,
                        feet - fig_h * rng.uniform(0.05, 0.25), fig_h * rng.uniform(0.75, 0.95))
    draw_person(draw, look, pose, x, feet, fig_h)
    for other, behind in neighbours:
        if not behind:
            draw_person(draw, other, random_pose(rng), x + rng.choice([-1, 1]) * rng.uniform(0.35, 0.9) * fig_h * 0.45,
                        feet + fig_h * rng.uniform(0.02, 0.15), fig_h * rng.uniform(1.0, 1.2))
    return finish(img, size, scene, rng)


def render_sequence(job: tuple[Sequence, int, str]) -> int:
    """Write every crop of one sequence; returns the number of images written."""
    seq, seed, root = job
    rng = np.random.default_rng([seed, SPLITS.index(seq.split), 1, seq.index])
    backdrop = scene(rng)
    looks = cast(rng, len(seq.people), seed)
    camera = rng.uniform(math.log(90), math.log(250))
    depth = rng.normal(0, 0.3, len(seq.people))
    actions: list[tuple[str, int] | None] = [None] * len(seq.people)
    paths = [dict(person.files) for person in seq.people]
    for frame in range(FRAMES):
        for i in range(len(seq.people)):
            actions[i] = next_action(rng, actions[i])
            path = paths[i].get(frame)
            if path is None:
                continue
            height = int(np.clip(math.exp(camera + depth[i] + rng.normal(0, 0.15)), 60, 400))
            others = [looks[j] for j in rng.permutation(len(looks)) if j != i]
            crop = render_crop(rng, backdrop, looks[i], random_pose(rng, actions[i]), others, height)
            Path(root, path).write_bytes(crop)
    return seq.n_images


# ---------------------------------------------------------------------------- the data set


def ground_truth_rows(p: Plan) -> list[tuple[str, int, int, int, str]]:
    """(img_id, player, sequence, frame, img_type) of every challenge image."""
    return [(path, person.player, seq.number, frame, "q" if frame == 0 else "g")
            for seq in p.sequences if seq.split == "challenge"
            for person in seq.people for frame, path in person.files]


def contact_sheet(root: Path, p: Plan, rows: int = 8, columns: int = 8, tile: int = 112) -> Image.Image:
    """Test players, one a row: the query (frame 00) then gallery frames, labelled synthetic."""
    test = [s for s in p.sequences if s.split == "test"]
    people = [(s, person) for s in test[:3] for person in s.people[: -(-rows // min(3, len(test)))]][:rows]
    cell_w, label_w, title_h = int(tile * 0.62), 110, 44
    sheet = Image.new("RGB", (label_w + columns * cell_w, title_h + len(people) * (tile + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 4), f"SYNTHETIC data: reid/synthetic.py, size={p.size}, seed={p.seed}", fill=(180, 0, 0),
              font=_font(FONTS[0], 15))
    draw.text((6, 24), "one test player a row: the query (frame 00, boxed), then gallery frames", fill=(0, 0, 0),
              font=_font(FONTS[3], 12))
    for r, (seq, person) in enumerate(people):
        y = title_h + r * (tile + 4)
        draw.text((6, y + tile // 2), f"seq {seq.number}\nplayer {person.player}", fill=(0, 0, 0),
                  font=_font(FONTS[3], 13), anchor="lm")
        for c, (_, path) in enumerate(person.files[:columns]):
            with Image.open(root / path) as img:
                img.thumbnail((cell_w - 4, tile))
                sheet.paste(img, (label_w + c * cell_w + (cell_w - img.width) // 2, y + tile - img.height))
            if c == 0:
                draw.rectangle([label_w + 1, y - 1, label_w + cell_w - 2, y + tile], outline=(0, 160, 0), width=2)
    return sheet


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _render_all(p: Plan, root: Path, workers: int, progress: bool) -> None:
    """Render every sequence, in worker processes when there is more than one."""
    from tqdm import tqdm

    jobs = [(seq, p.seed, str(root)) for seq in sorted(p.sequences, key=lambda s: -s.n_images)]
    with tqdm(total=p.n_images, unit="img", desc=f"synthetic {p.size}", disable=not progress) as bar:
        if workers <= 1:
            for job in jobs:
                bar.update(render_sequence(job))
            return
        context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for done in as_completed([pool.submit(render_sequence, job) for job in jobs]):
                bar.update(done.result())


def generate(data_dir: Path, size: str = "small", seed: int = 0, workers: int | None = None,
             progress: bool = True) -> Path:
    """Write the synthetic dataset to `<data_dir>/data_reid/` and return that folder.

    Built in a hidden folder beside the target and renamed at the end, so an interrupted run
    leaves no half dataset. An existing target is never overwritten.
    """
    target = Path(data_dir) / "data_reid"
    if target.exists():
        raise ReidError(f"{target} already exists: move it away to generate synthetic data there")
    p = plan(size, seed)
    partial = target.with_name(".data_reid.synthetic.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        folders = {str(Path(path).parent) for seq in p.sequences for person in seq.people for _, path in person.files}
        for folder in folders:
            (partial / folder).mkdir(parents=True, exist_ok=True)
        _render_all(p, partial, workers or default_workers(), progress)
        with open(partial / GROUND_TRUTH, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["img_id", "player", "sequence", "frame", "img_type"])
            writer.writerows(ground_truth_rows(p))
        contact_sheet(partial, p).quantize(256).save(partial / CONTACT_SHEET, optimize=True)
        marker = {"synthetic": True, "generator": "reid/synthetic.py", "size": size, "seed": seed,
                  "counts": p.counts()}
        (partial / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target
