"""How a person stands in a frame: facing and gait persist over frames, the details vary each one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
