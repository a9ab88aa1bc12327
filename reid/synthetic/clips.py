"""Synthetic game clips in the MOTChallenge layout: whole broadcast frames, ground truth and detections.

`generate_clips` writes, under `<data_dir>/clips/`, one folder per sequence as TrackEval and
SportsMOT lay them out, and a seqmap listing them:

    clips/seqmap.txt                 "name", then one sequence name a line
    clips/<name>/seqinfo.ini         [Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight, imExt
    clips/<name>/img1/000001.jpg     the frames
    clips/<name>/gt/gt.txt           frame,id,x,y,w,h,1,1,visibility (MOT17's ground truth)
    clips/<name>/det/det.txt         frame,-1,x,y,w,h,conf,-1,-1,-1 (what a detector would give)
    clips/synthetic.json             the marker: generator, size, seed, detector rates, counts

A clip is one arena (reid/synthetic/arena.py) seen by a broadcast camera that pans to follow the
play: two teams of five and two referees, drawn as the crops are (reid/synthetic/drawing.py),
running with momentum towards where the play goes, so they cross and hide one another; the
farther a person, the smaller and the earlier drawn. Each team substitutes: a starter leaves
for the bench for a long stretch while a reserve plays, then comes back, the case a tracker
can never bridge and appearance must. Ground-truth boxes are the drawn extents, clipped to
the frame; visibility is the share of the box neither hidden by people in front nor outside
the frame.

The detections are made from the ground truth by the documented `Detector` rates: boxes
jittered, some missed (more the more a person is hidden), a few false positives. Everything
follows from (seed, clip index) alone, so a seed always gives the same files.
"""

from __future__ import annotations

import io
import math
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reid.errors import ReidError
from reid.files import write_json
from reid.outputs import staging_folder
from reid.rules import Checked, Count, NonNegative, PositiveInt, Probability, checked
from reid.synthetic.arena import PANORAMA, PERSON, Scene, scene
from reid.synthetic.drawing import draw_person
from reid.synthetic.identities import Look, roster
from reid.synthetic.planning import Size
from reid.synthetic.poses import Pose, random_pose
from reid.synthetic.skeleton import extent

CLIPS = "clips"
MARKER = "synthetic.json"
SEQMAP = "seqmap.txt"
FPS = 25
FRAME = (960, 540)  # the broadcast frame, pixels
WINDOW = (1280.0, 720.0)  # the stretch of the panorama it shows, panorama pixels (so people are 80-150 px tall)
# (clips, frames) per size: tiny for tests, small for the demo and the bench, full a whole quarter's worth of
# boxes (about 25,000) for the timing goal of link_tracks.py.
CLIP_SIZES: dict[Size, tuple[int, int]] = {"tiny": (1, 150), "small": (2, 600), "full": (1, 2000)}
TEAM, BENCH, REFEREES = 5, 1, 2  # on court per team, reserves per team, referees
SPEED = 11.0  # top speed, panorama pixels a frame (the court is about 2,200 px long)
PEOPLE = 2 * (TEAM + BENCH) + REFEREES


@dataclass
class Detector(Checked):
    """How `det/det.txt` departs from the ground truth."""

    miss: Probability = 0.04  # chance a fully visible person is not detected in a frame
    occluded: Probability = 0.5  # visibility under which the chance of a miss rises linearly to 1 at 0
    jitter: NonNegative = 0.04  # standard deviation of each box edge, in box heights
    false_positives: NonNegative = 0.05  # mean spurious boxes a frame (on the floor, low confidence)


@dataclass(frozen=True)
class Track:
    """Where each person is and how they stand, frame by frame (absent: NaN position)."""

    feet: np.ndarray  # (T, P, 2) feet position in panorama pixels
    poses: list[list[Pose | None]]  # [T][P]
    left: np.ndarray  # (T,) left edge of the camera's window in panorama pixels
    top: float  # top edge of the window


def _perspective(y: np.ndarray, floor_top: int) -> np.ndarray:
    """A person's height in panorama pixels at feet height y: the far side of the court is smaller."""
    t = np.clip((y - floor_top) / (PANORAMA[1] - floor_top), 0, 1)
    return PERSON * (0.55 + 0.45 * t)


def _schedule(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(P, T) bool: who is on court when. Each team sends one starter to the bench for a long stretch."""
    on = np.zeros((PEOPLE, frames), dtype=bool)
    for team in range(2):
        base = team * (TEAM + BENCH)
        on[base:base + TEAM] = True
        out = base + int(rng.integers(TEAM))
        reserve = base + TEAM + int(rng.integers(BENCH))
        leave, back = (int(frames * f) for f in (rng.uniform(0.12, 0.3), rng.uniform(0.65, 0.85)))
        on[out, leave:back] = False
        on[reserve, leave:back] = True
    on[2 * (TEAM + BENCH):] = True
    return on


def simulate(rng: np.random.Generator, frames: int, floor_top: int) -> Track:
    """People run with momentum towards the play (a focus that swings between the baskets) and
    their own spot in it; the camera's window follows their mean, smoothed."""
    w, h = PANORAMA
    court = np.array([[120.0, floor_top + 110.0], [w - 120.0, h - 8.0]])
    on = _schedule(rng, frames)
    pos = rng.uniform(court[0], court[1], (PEOPLE, 2))
    vel = np.zeros((PEOPLE, 2))
    spot = rng.normal(0, [350, 170], (PEOPLE, 2))
    bench = np.array([w / 2, h - 10.0])
    focus, end = w / 2, int(rng.integers(2))
    gait = rng.integers(2, 4, PEOPLE)  # standing or defending when still, each person's own habit
    facing = ["front"] * PEOPLE
    feet = np.full((frames, PEOPLE, 2), np.nan)
    poses: list[list[Pose | None]] = []
    left = np.zeros(frames)
    cam = float(np.clip(pos[:, 0].mean() - WINDOW[0] / 2, 0, w - WINDOW[0]))
    for t in range(frames):
        if rng.random() < 1 / 250:  # possession changes: the play heads for the other basket
            end = 1 - end
        focus += (np.array([350.0, w - 350.0])[end] - focus) * 0.01
        if rng.random() < 0.02:
            spot[rng.integers(PEOPLE)] = rng.normal(0, [350, 170])
        entering = on[:, t] & ~on[:, t - 1] if t else np.zeros(PEOPLE, bool)
        pos[entering] = bench + rng.normal(0, 30, (int(entering.sum()), 2))
        vel[entering] = 0
        target = np.clip(np.array([focus, (court[0, 1] + court[1, 1]) / 2]) + spot, court[0], court[1])
        vel = 0.9 * vel + 0.02 * (target - pos) + rng.normal(0, 0.8, (PEOPLE, 2))
        speed = np.linalg.norm(vel, axis=1, keepdims=True)
        vel *= np.minimum(1, SPEED / np.maximum(speed, 1e-9))
        pos = np.clip(pos + vel, court[0], court[1])
        cam += (float(np.clip(pos[on[:, t], 0].mean() - WINDOW[0] / 2, 0, w - WINDOW[0])) - cam) * 0.05
        left[t] = cam
        row: list[Pose | None] = []
        for i in range(PEOPLE):
            if not on[i, t]:
                row.append(None)
                continue
            feet[t, i] = pos[i]
            vx, vy = vel[i]
            s = math.hypot(vx, vy)
            if s > 2.5:
                facing[i] = ("right" if vx > 0 else "left") if abs(vx) > abs(vy) else ("front" if vy > 0 else "back")
            g = 0 if s > 7 else 1 if s > 2.5 else int(gait[i])
            pose = random_pose(rng, (facing[i], g))
            row.append(replace(pose, phase=float((t * (0.15 + 0.04 * s) + i) % (2 * math.pi))))
        poses.append(row)
    return Track(feet, poses, left, float(h - WINDOW[1]))


def _boxes(track: Track, looks: list[Look], floor_top: int, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, boxes (n, 4) x0 y0 x1 y1 in frame pixels unclipped, heights) of the people on court at t,
    far first (the drawing order)."""
    scale = FRAME[0] / WINDOW[0]
    present = np.flatnonzero(~np.isnan(track.feet[t, :, 0]))
    present = present[np.argsort(track.feet[t, present, 1], kind="stable")]
    fx = (track.feet[t, present, 0] - track.left[t]) * scale
    fy = (track.feet[t, present, 1] - track.top) * scale
    hs = _perspective(track.feet[t, present, 1], floor_top) * scale
    reach = np.array([extent(looks[i], track.poses[t][i]) for i in present]).reshape(-1, 2)
    boxes = np.stack([fx + reach[:, 0] * hs, fy - hs, fx + reach[:, 1] * hs, fy], axis=1)
    return present, boxes, hs


def visibility(boxes: np.ndarray) -> np.ndarray:
    """Share of each box (far first) neither behind a later box nor outside the frame, on a
    16 x 8 grid of points in the box."""
    u = (np.arange(8) + 0.5) / 8
    v = (np.arange(16) + 0.5) / 16
    px = boxes[:, None, None, 0] + u[None, None, :] * (boxes[:, None, None, 2] - boxes[:, None, None, 0])
    py = boxes[:, None, None, 1] + v[None, :, None] * (boxes[:, None, None, 3] - boxes[:, None, None, 1])
    px, py = np.broadcast_arrays(px, py)
    seen = (px >= 0) & (px < FRAME[0]) & (py >= 0) & (py < FRAME[1])
    for j in range(1, len(boxes)):  # people drawn after box i hide it
        b = boxes[j]
        inside = (px[:j] >= b[0]) & (px[:j] <= b[2]) & (py[:j] >= b[1]) & (py[:j] <= b[3])
        seen[:j] &= ~inside
    return seen.reshape(len(boxes), -1).mean(axis=1)


def render_frame(backdrop: Scene, looks: list[Look], track: Track, t: int, quality: int) -> bytes:
    """The broadcast frame at t as JPEG bytes: the window of the panorama, then people far to near."""
    box = (track.left[t], track.top, track.left[t] + WINDOW[0], track.top + WINDOW[1])
    img = backdrop.panorama.resize(FRAME, Image.Resampling.BILINEAR, box=box)
    draw = ImageDraw.Draw(img)
    ids, boxes, hs = _boxes(track, looks, backdrop.floor_top, t)
    scale = FRAME[0] / WINDOW[0]
    for i, h in zip(ids, hs, strict=True):
        x = (track.feet[t, i, 0] - track.left[t]) * scale
        y = (track.feet[t, i, 1] - track.top) * scale
        draw_person(draw, looks[i], track.poses[t][i], x, y, h)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def ground_truth(track: Track, looks: list[Look], floor_top: int) -> np.ndarray:
    """(n, 7) float64 rows frame, id, x, y, w, h, visibility: each drawn person's box clipped to
    the frame, kept where at least a quarter of it shows in the frame."""
    rows = []
    for t in range(len(track.left)):
        ids, boxes, _ = _boxes(track, looks, floor_top, t)
        if not len(ids):
            continue
        vis = visibility(boxes)
        clipped = np.clip(boxes, 0, [FRAME[0], FRAME[1], FRAME[0], FRAME[1]])
        area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        shown = np.prod(np.maximum(clipped[:, 2:] - clipped[:, :2], 0), axis=1) / area
        keep = shown >= 0.25
        xywh = np.concatenate([clipped[:, :2], clipped[:, 2:] - clipped[:, :2]], axis=1)
        rows.append(np.column_stack([np.full(len(ids), t + 1), ids + 1, xywh, vis])[keep])
    return np.concatenate(rows) if rows else np.zeros((0, 7))


def detections(gt: np.ndarray, rng: np.random.Generator, detector: Detector, frames: int,
               floor_top: int) -> np.ndarray:
    """(n, 6) frame, x, y, w, h, conf: the ground truth jittered, thinned where people are hidden,
    plus false positives; sorted by frame."""
    vis = gt[:, 6]
    hidden = np.clip((detector.occluded - vis) / max(detector.occluded, 1e-9), 0, 1)
    kept = gt[rng.random(len(gt)) >= detector.miss + (1 - detector.miss) * hidden]
    x0, y0 = kept[:, 2], kept[:, 3]
    x1, y1 = x0 + kept[:, 4], y0 + kept[:, 5]
    edges = np.column_stack([x0, y0, x1, y1]) + rng.normal(0, detector.jitter, (len(kept), 4)) * kept[:, 5:6]
    edges = np.clip(edges, 0, [FRAME[0], FRAME[1], FRAME[0], FRAME[1]])
    wh = np.maximum(edges[:, 2:] - edges[:, :2], 2)
    conf = np.clip(0.95 - 0.6 * (1 - kept[:, 6]) + rng.normal(0, 0.05, len(kept)), 0.05, 1)
    real = np.column_stack([kept[:, 0], edges[:, :2], wh, conf])
    n_false = rng.poisson(detector.false_positives * frames)
    fy = rng.uniform(FRAME[1] * 0.4, FRAME[1], n_false)
    fh = _perspective(fy / (FRAME[0] / WINDOW[0]) + PANORAMA[1] - WINDOW[1], floor_top) * FRAME[0] / WINDOW[0]
    fh *= rng.uniform(0.3, 1.0, n_false)
    fw = fh * rng.uniform(0.3, 0.6, n_false)
    fx = rng.uniform(0, FRAME[0] - fw)
    false = np.column_stack([rng.integers(1, frames + 1, n_false), fx, fy - fh, fw, fh, rng.uniform(0.1, 0.6, n_false)])
    out = np.concatenate([real, false])
    return out[np.argsort(out[:, 0], kind="stable")]


def _seqinfo(name: str, frames: int) -> str:
    return (f"[Sequence]\nname={name}\nimDir=img1\nframeRate={FPS}\nseqLength={frames}\n"
            f"imWidth={FRAME[0]}\nimHeight={FRAME[1]}\nimExt=.jpg\n")


def write_clip(folder: Path, name: str, seed: int, index: int, frames: int, detector: Detector) -> dict:
    """One sequence under `folder/name`; returns its counts."""
    rng = np.random.default_rng([seed, 9, index])
    backdrop = scene(rng)
    looks = roster(rng, TEAM + BENCH, REFEREES, seed)
    track = simulate(rng, frames, backdrop.floor_top)
    seq = folder / name
    for sub in ("img1", "gt", "det"):
        (seq / sub).mkdir(parents=True)
    for t in range(frames):
        quality = int(np.clip(backdrop.quality + np.random.default_rng([seed, 9, index, t]).integers(-3, 4), 30, 95))
        (seq / "img1" / f"{t + 1:06d}.jpg").write_bytes(render_frame(backdrop, looks, track, t, quality))
    gt = ground_truth(track, looks, backdrop.floor_top)
    det = detections(gt, np.random.default_rng([seed, 9, index, frames]), detector, frames, backdrop.floor_top)
    with open(seq / "gt" / "gt.txt", "w") as f:
        for r in gt:
            f.write(f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},1,1,{r[6]:.3f}\n")
    with open(seq / "det" / "det.txt", "w") as f:
        for r in det:
            f.write(f"{int(r[0])},-1,{r[1]:.2f},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.3f},-1,-1,-1\n")
    (seq / "seqinfo.ini").write_text(_seqinfo(name, frames))
    return {"frames": frames, "people": len(np.unique(gt[:, 1])), "boxes": len(gt), "detections": len(det)}


def sequence_names(size: Size, seed: int) -> list[str]:
    return [f"synth-{seed}-{i + 1:02d}" for i in range(CLIP_SIZES[size][0])]


@checked
def generate_clips(data_dir: Path, size: Size = "small", seed: Count = 0, detector: Detector | None = None,
                   progress: bool = True) -> Path:
    """Write the synthetic clips to `<data_dir>/clips/` and return that folder.

    Built in a hidden folder beside the target and renamed at the end, so an interrupted run
    leaves no half set of clips. An existing target is never overwritten.
    """
    from tqdm import tqdm

    detector = detector or Detector()
    target = Path(data_dir) / CLIPS
    if target.exists():
        raise ReidError(f"{target} already exists: move it away to generate clips there")
    frames = CLIP_SIZES[size][1]
    names = sequence_names(size, seed)
    partial = staging_folder(target)
    try:
        counts = {name: write_clip(partial, name, seed, i, frames, detector)
                  for i, name in enumerate(tqdm(names, desc=f"synthetic clips {size}", unit="clip",
                                                disable=not progress))}
        (partial / SEQMAP).write_text("name\n" + "".join(f"{n}\n" for n in names))
        write_json({"synthetic": True, "generator": "reid/synthetic/clips.py", "kind": "clips", "size": size,
                    "seed": seed, "detector": asdict(detector), "sequences": counts}, partial / MARKER)
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


@checked
def generate_clip_crops(data_dir: Path, size: Size = "small", seed: Count = 0, every: PositiveInt = 6,
                        min_visibility: Probability = 0.6, progress: bool = True) -> Path:
    """Write crops of clips' ground-truth boxes under `<data_dir>/data_reid/` in the `folders`
    layout (`train/<clip>-<person>/<clip>/<frame>.jpg`, every `every`-th frame of a person at
    least `min_visibility` visible): training data for a model that links tracks. It draws 4, 24
    or 96 clips (tiny, small, full) of 150 frames with clip seeds from 1000 + 1000 * seed up, each
    its own arena and people, so none of them is in the clips of seeds below 1000."""
    from tqdm import tqdm

    target = Path(data_dir) / "data_reid"
    if target.exists():
        raise ReidError(f"{target} already exists: move it away to generate clip crops there")
    count = {"tiny": 4, "small": 24, "full": 96}[size]
    partial = staging_folder(target)
    try:
        for k in tqdm(range(count), desc=f"synthetic clip crops {size}", unit="clip", disable=not progress):
            clip_seed = 1000 + seed * 1000 + k
            rng = np.random.default_rng([clip_seed, 9, 0])
            backdrop = scene(rng)
            looks = roster(rng, TEAM + BENCH, REFEREES, clip_seed)
            track = simulate(rng, CLIP_SIZES["tiny"][1], backdrop.floor_top)
            gt = ground_truth(track, looks, backdrop.floor_top)
            keep = (gt[:, 6] >= min_visibility) & ((gt[:, 0] - 1) % every == 0)
            for t in np.unique(gt[keep, 0]).astype(int):
                quality = int(np.clip(backdrop.quality, 30, 95))
                frame = Image.open(io.BytesIO(render_frame(backdrop, looks, track, t - 1, quality)))
                for r in gt[keep & (gt[:, 0] == t)]:
                    folder = partial / "train" / f"{k:03d}-{int(r[1]):02d}" / f"clip{k:03d}"
                    folder.mkdir(parents=True, exist_ok=True)
                    frame.crop((int(r[2]), int(r[3]), int(np.ceil(r[2] + r[4])), int(np.ceil(r[3] + r[5])))).save(
                        folder / f"{t:06d}.jpg", quality=quality)
        write_json({"synthetic": True, "generator": "reid/synthetic/clips.py", "kind": "clip_crops", "size": size,
                    "seed": seed, "layout": "folders"}, partial / MARKER)
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target
