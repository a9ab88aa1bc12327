"""The detection crops of a sequence, each from (seed, split, sequence index) alone.

That is what makes the files byte-identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reid.synthetic.arena import BAND, PANORAMA, PERSON, VIEW, Scene, scene
from reid.synthetic.camera import finish
from reid.synthetic.drawing import draw_person
from reid.synthetic.identities import Look, cast
from reid.synthetic.planning import FRAMES, SPLITS, Sequence
from reid.synthetic.poses import Pose, next_action, random_pose
from reid.synthetic.skeleton import extent


def render_crop(rng: np.random.Generator, scene: Scene, look: Look, pose: Pose, others: list[Look],
                height: int) -> bytes:
    """One detection crop of `look`: box size and offset, background, neighbours, nuisances."""
    fill = rng.uniform(0.75, 1.02)  # the figure's share of the box height
    left, right = extent(look, pose)
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


def sample_crops(n: int, seed: int = 0) -> list[np.ndarray]:
    """`n` player crops of one scene, as H x W x 3 uint8 RGB arrays of assorted sizes: real-looking
    inputs for checks that have no dataset at hand (export.py's verification)."""
    rng = np.random.default_rng([seed, 7])
    backdrop = scene(rng)
    looks = cast(rng, 10, seed)
    crops = []
    for i in range(n):
        height = int(rng.integers(60, 260))
        crop = render_crop(rng, backdrop, looks[i % len(looks)], random_pose(rng), looks, height)
        with Image.open(io.BytesIO(crop)) as img:
            crops.append(np.asarray(img.convert("RGB")))
    return crops
