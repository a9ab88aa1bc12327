"""Who is on court: the league's kits and each person's look, the cues re-identification reads.

Teammates share a kit, so identity lives in the number, skin, hair, build and gear, each drawn
independently of the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from reid.synthetic.palette import FONTS, RGB, SKIN, hsv, pick, word
from reid.synthetic.planning import SPLITS


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


HAIR = [(20, 16, 14), (45, 30, 22), (85, 55, 35), (130, 90, 55), (200, 165, 100),
        (150, 70, 35), (170, 170, 170)]
HAIR_STYLES = ("bald", "buzz", "short", "short", "afro", "long", "bun", "braids")
ACCESSORY = [(245, 245, 245), (20, 20, 20), (200, 30, 40), (30, 60, 180), (240, 200, 40),
             (60, 170, 90), (240, 120, 30)]
SHOES = [(245, 245, 245), (20, 20, 22), (200, 30, 40), (40, 80, 200), (250, 220, 40),
         (80, 200, 120), (250, 120, 170), (150, 150, 155), (240, 120, 30)]
PATTERNS = ("plain", "pinstripes", "hoops", "panels", "sash", "checks")
N_TEAMS = 64
NUMBERS = ["00"] + [str(i) for i in range(100)]


@lru_cache(maxsize=4)
def league(seed: int) -> tuple[tuple[Kit, Kit], ...]:
    """(home, away) kits of the teams every sequence draws from: kits recur across sequences."""
    rng = np.random.default_rng([seed, len(SPLITS) + 1])
    teams = []
    for _ in range(N_TEAMS):
        hue = rng.random()
        colour = hsv(hue, rng.uniform(0.55, 1.0), rng.uniform(0.35, 0.9))
        second = hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0))
        if rng.random() < 0.35:  # the classic white home kit
            light = tuple(int(v) for v in rng.integers(225, 256, 3))
        else:
            light = hsv(hue + rng.uniform(0.25, 0.75), rng.uniform(0.2, 0.6), rng.uniform(0.75, 1.0))
        font, names, pattern = pick(rng, FONTS), bool(rng.random() < 0.5), pick(rng, PATTERNS)
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
    style = pick(rng, HAIR_STYLES)

    def maybe(p: float) -> bool:
        return rng.random() < p

    team = ACCESSORY[:2] + [kit.trim]  # the league's rule: gear in white, black or the team's colour

    return Look(
        kit=kit,
        number=number,
        name=word(rng, 4, 9),
        skin=tuple(int(v) for v in skin),
        hair_style=style,
        hair=pick(rng, HAIR),
        beard=bool(maybe(0.3)),
        build=float(rng.uniform(0.8, 1.3)),
        legs=float(rng.uniform(0.92, 1.08)),
        head=float(rng.uniform(0.88, 1.12)),
        shoes=(20, 20, 20) if kit.referee else pick(rng, SHOES),
        sole=pick(rng, [(245, 245, 245), (20, 20, 20), (180, 140, 90)]),
        socks=pick(rng, [(245, 245, 245), (245, 245, 245), (20, 20, 20), kit.shirt, kit.trim]),
        sock_height=float(pick(rng, [0.12, 0.35, 0.55, 0.8])),
        headband=pick(rng, team) if maybe(0.4) else None,
        undershirt=pick(rng, [(245, 245, 245), (20, 20, 20), kit.trim]) if maybe(0.4) and not kit.referee else None,
        arm_sleeve=(int(rng.integers(2)), pick(rng, team)) if maybe(0.5) else None,
        leg_sleeve=(int(rng.integers(2)), pick(rng, team), float(rng.uniform(0.5, 1.0)))
        if maybe(0.4) and not kit.referee else None,
        knee_pad=(int(rng.integers(2)), pick(rng, ACCESSORY[:2])) if maybe(0.4) and not kit.referee else None,
        wrist_tape=(int(rng.integers(2)), pick(rng, team)) if maybe(0.5) else None,
        tattoos=tattoos(rng) if maybe(0.5) else (),
    )


def tattoos(rng: np.random.Generator) -> tuple[tuple[int, float, float, float], ...]:
    """Ink marks on one to three limbs: a texture that stays with the player whatever the pose."""
    limbs = rng.choice(4, int(rng.integers(1, 4)), replace=False, p=[0.35, 0.35, 0.15, 0.15])
    marks = []
    for limb in limbs:
        n = int(rng.integers(6, 16))
        marks += zip([int(limb)] * n, rng.uniform(0.1, 0.95, n).tolist(), rng.uniform(-0.35, 0.35, n).tolist(),
                     rng.uniform(0.12, 0.35, n).tolist(), strict=True)
    return tuple(marks)


def cast(rng: np.random.Generator, n_people: int, seed: int) -> list[Look]:
    """The people of one sequence: sometimes referees, the rest split between two teams."""
    referees = int(rng.choice([0, 0, 1, 1, 2])) if n_people > 8 else int(rng.integers(2))
    players = n_people - referees
    home, away = (int(i) for i in rng.choice(N_TEAMS, 2, replace=False))
    sizes = [players // 2, players - players // 2]
    rng.shuffle(sizes)
    looks = []
    for team, size in zip((league(seed)[home][0], league(seed)[away][1]), sizes, strict=True):
        numbers = rng.choice(len(NUMBERS), size, replace=False)
        looks += [_look(rng, team, NUMBERS[n]) for n in numbers]
    looks += [_look(rng, REFEREE, str(int(rng.integers(1, 80)))) for _ in range(referees)]
    return [looks[i] for i in rng.permutation(len(looks))]


def roster(rng: np.random.Generator, per_team: int, referees: int, seed: int) -> list[Look]:
    """A game's people in order: two teams of `per_team` (each number once a team), then referees."""
    home, away = (int(i) for i in rng.choice(N_TEAMS, 2, replace=False))
    looks = []
    for team in (league(seed)[home][0], league(seed)[away][1]):
        looks += [_look(rng, team, NUMBERS[n]) for n in rng.choice(len(NUMBERS), per_team, replace=False)]
    return looks + [_look(rng, REFEREE, str(int(rng.integers(1, 80)))) for _ in range(referees)]
