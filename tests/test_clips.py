"""Synthetic game clips (reid/synthetic/clips.py, download.py --synthetic_kind=clips|clip_crops): the MOT
layout, its ground truth, the detector's rates, determinism and re-runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import call
from reid.mot import read_mot, read_seqinfo
from reid.synthetic.clips import CLIP_SIZES, FRAME, Detector, detections, visibility

TINY_FRAMES = CLIP_SIZES["tiny"][1]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_clips(data_dir: Path, *args: str):
    return call("download.py", "--synthetic=true", "--synthetic_kind=clips", "--synthetic_size=tiny",
                f"--data_dir={data_dir}", *args)


def sequences(clips: Path) -> list[Path]:
    lines = (clips / "seqmap.txt").read_text().splitlines()
    assert lines[0] == "name"
    return [clips / name for name in lines[1:]]


def ground_truth(seq: Path) -> np.ndarray:
    """gt.txt as an (n, 9) array."""
    return np.loadtxt(seq / "gt" / "gt.txt", delimiter=",", ndmin=2)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """D/clips of the tiny size, seed 0, made as a user would."""
    data_dir = tmp_path_factory.mktemp("clips")
    made = make_clips(data_dir, "--seed=0")
    assert made.returncode == 0, made.stderr
    return data_dir / "clips"


def test_clips_are_a_valid_mot_layout(clips):
    seqs = sequences(clips)
    assert len(seqs) == CLIP_SIZES["tiny"][0]
    for seq in seqs:
        info = read_seqinfo(seq)
        assert info.name == seq.name
        images = sorted((seq / "img1").glob("*.jpg"))
        assert info.frames == len(images) == TINY_FRAMES
        assert [p.name for p in images] == [f"{t:06d}.jpg" for t in range(1, info.frames + 1)]
        for path in images[:: len(images) // 3]:
            with Image.open(path) as img:
                assert img.format == "JPEG" and img.size == (info.width, info.height) == FRAME

        gt = read_mot(seq / "gt" / "gt.txt", "tracks")
        raw = ground_truth(seq)
        assert raw.shape[1] == 9 and len(raw) == len(gt)
        assert ((raw[:, 8] >= 0) & (raw[:, 8] <= 1)).all()
        assert gt.frame.min() >= 1 and gt.frame.max() <= info.frames
        x, y, w, h = gt.box.T
        assert (x >= 0).all() and (y >= 0).all()
        assert (x + w <= info.width + 0.01).all() and (y + h <= info.height + 0.01).all()

        det = read_mot(seq / "det" / "det.txt", "detections")
        assert (det.id == -1).all()
        assert det.frame.min() >= 1 and det.frame.max() <= info.frames
        assert ((det.conf > 0) & (det.conf <= 1)).all()
        assert 0.5 * len(gt) < len(det) < 1.2 * len(gt)


def test_marker_says_what_was_made(clips):
    marker = json.loads((clips / "synthetic.json").read_text())
    assert marker["synthetic"] is True and marker["kind"] == "clips"
    assert marker["size"] == "tiny" and marker["seed"] == 0
    assert marker["detector"] == {"miss": 0.04, "occluded": 0.5, "jitter": 0.04, "false_positives": 0.05}


def test_ground_truth_has_two_teams_referees_a_long_absence_and_occlusion(clips):
    gt = ground_truth(sequences(clips)[0])
    ids = np.unique(gt[:, 1])
    assert len(ids) == 14  # two teams of 5 plus a reserve each, and 2 referees
    gaps = [np.diff(np.sort(gt[gt[:, 1] == i, 0])).max(initial=0) for i in ids]
    assert max(gaps) >= TINY_FRAMES / 4  # someone leaves for the bench and comes back
    assert (gt[:, 8] < 0.5).any()  # people hide one another
    for t in np.unique(gt[:, 0]):
        in_frame = gt[gt[:, 0] == t, 1]
        assert len(in_frame) == len(np.unique(in_frame)) <= 12  # at most 10 players and 2 referees on court


def test_second_run_does_nothing_and_other_settings_are_refused(tmp_path):
    assert make_clips(tmp_path).returncode == 0
    before = tree(tmp_path / "clips")
    again = make_clips(tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    for other in ("--seed=1", "--det_miss=0.2"):
        refused = make_clips(tmp_path, other)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "exists" in refused.stderr
    assert tree(tmp_path / "clips") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips"]  # no staging folder left behind


def test_same_seed_same_bytes_other_seed_other_clips(clips, tmp_path):
    assert make_clips(tmp_path / "same", "--seed=0").returncode == 0
    assert make_clips(tmp_path / "other", "--seed=1").returncode == 0
    seq = sequences(clips)[0]
    twin = tmp_path / "same" / "clips" / seq.name
    for rel in ("gt/gt.txt", "det/det.txt", "seqinfo.ini", "img1/000001.jpg", "img1/000075.jpg",
                "img1/000150.jpg"):
        assert (twin / rel).read_bytes() == (seq / rel).read_bytes(), rel
    other = sequences(tmp_path / "other" / "clips")[0]
    assert other.name != seq.name
    assert (other / "gt" / "gt.txt").read_bytes() != (seq / "gt" / "gt.txt").read_bytes()
    assert (other / "det" / "det.txt").read_bytes() != (seq / "det" / "det.txt").read_bytes()


def seven_columns(gt9: np.ndarray) -> np.ndarray:
    """gt.txt rows as `ground_truth` returns them: frame, id, x, y, w, h, visibility."""
    return gt9[:, [0, 1, 2, 3, 4, 5, 8]]


def test_perfect_detector_gives_the_ground_truth_boxes(clips):
    gt = seven_columns(ground_truth(sequences(clips)[0]))
    perfect = Detector(miss=0, occluded=0, jitter=0, false_positives=0)
    det = detections(gt, np.random.default_rng(0), perfect, TINY_FRAMES, 200)
    assert det.shape == (len(gt), 6)
    np.testing.assert_array_equal(det[:, 0], gt[:, 0])
    np.testing.assert_allclose(det[:, 1:5], gt[:, 2:6])
    assert ((det[:, 5] > 0) & (det[:, 5] <= 1)).all()


def test_missing_detector_and_false_positives(clips):
    gt = seven_columns(ground_truth(sequences(clips)[0]))
    blind = Detector(miss=1, occluded=0, jitter=0, false_positives=0)
    assert len(detections(gt, np.random.default_rng(0), blind, TINY_FRAMES, 200)) == 0
    noisy = Detector(miss=1, occluded=0, jitter=0, false_positives=3)
    det = detections(gt, np.random.default_rng(0), noisy, TINY_FRAMES, 200)
    assert 0.8 * 3 * TINY_FRAMES < len(det) < 1.2 * 3 * TINY_FRAMES
    assert det[:, 0].min() >= 1 and det[:, 0].max() <= TINY_FRAMES
    assert (np.diff(det[:, 0]) >= 0).all()  # sorted by frame
    x, y, w, h = det[:, 1:5].T
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= FRAME[0]).all() and (y + h <= FRAME[1] + 1e-6).all()


def test_hidden_people_are_missed_more(clips):
    gt = seven_columns(ground_truth(sequences(clips)[0]))
    rule = Detector(miss=0, occluded=0.5, jitter=0, false_positives=0)
    det = detections(gt, np.random.default_rng(0), rule, TINY_FRAMES, 200)
    found = {(int(r[0]), round(r[1], 2), round(r[2], 2)) for r in det}
    kept = np.array([(int(r[0]), round(r[2], 2), round(r[3], 2)) in found for r in gt])
    assert kept[gt[:, 6] >= 0.5].all()  # no miss above the occlusion threshold when miss=0
    assert not kept[gt[:, 6] == 0].any()  # a fully hidden person is never detected
    low = (gt[:, 6] > 0) & (gt[:, 6] < 0.25)
    assert low.any() and kept[low].mean() < 0.5

def test_visibility_of_hand_made_boxes():
    behind = np.array([[100.0, 100, 150, 200], [90, 90, 160, 210]])  # far first: the second is in front
    np.testing.assert_allclose(visibility(behind), [0.0, 1.0])
    disjoint = np.array([[100.0, 100, 150, 200], [300, 100, 350, 200]])
    np.testing.assert_allclose(visibility(disjoint), [1.0, 1.0])
    half_in_front = np.array([[100.0, 100, 150, 200], [125, 50, 200, 250]])
    np.testing.assert_allclose(visibility(half_in_front), [0.5, 1.0])
    edges = np.array([[-25.0, 100, 25, 200], [FRAME[0] - 25, 100, FRAME[0] + 25, 200],
                      [300, FRAME[1] - 50, 350, FRAME[1] + 50]])
    np.testing.assert_allclose(visibility(edges), [0.5, 0.5, 0.5], atol=1 / 16)


def test_clip_crops_are_accepted_by_preprocess(tmp_path):
    made = call("download.py", "--synthetic=true", "--synthetic_kind=clip_crops", "--synthetic_size=tiny",
                f"--data_dir={tmp_path}")
    assert made.returncode == 0, made.stderr
    root = tmp_path / "data_reid"
    crops = sorted((root / "train").glob("*/*/*.jpg"))
    assert crops and all(p.stem.isdigit() and len(p.stem) == 6 for p in crops)
    assert json.loads((root / "synthetic.json").read_text())["kind"] == "clip_crops"
    again = call("download.py", "--synthetic=true", "--synthetic_kind=clip_crops", "--synthetic_size=tiny",
                 f"--data_dir={tmp_path}")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    parts = call("preprocess_data.py", f"--data_dir={tmp_path}", "--layout=folders")
    assert parts.returncode == 0, parts.stderr
    with open(root / "train_df.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(crops)
    assert len({r["player"] for r in rows}) >= 10
    assert {r["split"] for r in rows} == {"train", "test"}
