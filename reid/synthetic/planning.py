"""What a dataset holds before anything is drawn: sequences, people, the frames kept and file names.

The plan alone fixes the counts and names, so they can be checked (and the 2023 counts matched)
without rendering an image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from reid.errors import ReidError
from reid.rules import Count, checked

FRAMES = 20
SPLITS = ("train", "test", "challenge")
SEQUENCE_PEOPLE = (8, 12)

# (players, images) per split. `full` is the 2023 edition; `small` is about a tenth, with
# three test sequences so that the test gallery still mixes sequences; `tiny` is for tests.
Size = Literal["tiny", "small", "full"]
SIZES: dict[Size, dict[str, tuple[int, int]]] = {
    "tiny": {"train": (16, 240), "test": (8, 120), "challenge": (8, 120)},
    "small": {"train": (44, 860), "test": (30, 576), "challenge": (62, 1012)},
    "full": {"train": (436, 8569), "test": (50, 960), "challenge": (618, 10123)},
}


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


@checked
def plan(size: Size = "small", seed: Count = 0) -> Plan:
    """Every sequence, person and file name of a dataset, without rendering anything."""
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
