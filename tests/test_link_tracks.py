"""track.py and link_tracks.py on a tiny synthetic clip: every input row comes back with its id
alone changed, never two boxes of a frame in one identity; bad input is one line and no out_dir."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import cv2
import numpy as np
import pandas as pd
import pytest

import link_tracks
import reid.linking
from helpers import call, write_checkpoint
from reid.mot import read_mot, read_seqinfo
from reid.synthetic.clips import generate_clips

FAST = ["--samples=8", "--num_workers=1", "--device=cpu", "--batch_size=32"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """One tiny clip (its sequence folder), a random test_vit run folder, and the tracker's output."""
    root = tmp_path_factory.mktemp("clips")
    clips = generate_clips(root, "tiny", 0, progress=False)
    (sequence,) = [p for p in clips.iterdir() if p.is_dir()]
    model = write_checkpoint(root / "ck" / "vit" / "best.pt", "test_vit", 32, seed=1).parent
    tracks = root / "track" / "tracks.txt"
    result = call("track.py", f"--sequence={sequence}", f"--out={tracks}")
    return sequence, model, tracks, result


@pytest.fixture(scope="module")
def linked(clip, tmp_path_factory):
    sequence, model, tracks, _ = clip
    out = tmp_path_factory.mktemp("linked") / "out"
    result = call("link_tracks.py", f"--sequence={sequence}", f"--tracks={tracks}", f"--checkpoints={model}",
                  f"--out_dir={out}", *FAST)
    assert result.returncode == 0, result.stderr
    return out, result


def link(clip, out, *args):
    sequence, model, tracks, _ = clip
    given = {a.split("=", 1)[0] for a in args}
    frames = [] if given & {"--sequence", "--video"} else [f"--sequence={sequence}"]
    default_tracks = [] if "--tracks" in given else [f"--tracks={tracks}"]
    return call("link_tracks.py", *frames, *default_tracks, f"--checkpoints={model}", f"--out_dir={out}", *FAST,
                *args)


def tails(path) -> Counter:
    """Each row's text after the id, counted."""
    return Counter(line.split(",", 2)[2] for line in path.read_text().splitlines() if line.strip())


def test_track_writes_ids_from_one_within_the_sequence_and_scores_it(clip):
    sequence, _, tracks, result = clip
    assert result.returncode == 0, result.stderr
    rows = read_mot(tracks)
    assert len(rows) > 100 and (rows.id >= 1).all()
    assert rows.frame.min() >= 1 and rows.frame.max() <= read_seqinfo(sequence).frames
    assert re.search(r"\d+ detections -> \d+ boxes in \d+ tracklets \(bytetrack\)", result.stdout)
    assert f"against {sequence / 'gt' / 'gt.txt'}: HOTA " in result.stdout and "IDF1 " in result.stdout


def test_linking_keeps_every_row_and_changes_the_id_alone(clip, linked):
    _, _, tracks, _ = clip
    out, result = linked
    assert tails(out / "tracks.txt") == tails(tracks)
    rows, before = read_mot(out / "tracks.txt"), read_mot(tracks)
    assert len(rows) == len(before) and (rows.id >= 1).all()
    table = pd.read_csv(out / "identities.csv")
    assert table["boxes"].sum() == len(before) and len(table) == table["piece"].nunique()
    assert set(table["identity"]) == set(rows.id.tolist())
    assert set(table["track_id"]) == set(before.id.tolist())
    assert (out / "identities.png").stat().st_size > 0
    assert json.loads((out / "provenance.json").read_text())["tracks"] == str(tracks)
    match = re.search(r"(\d+) tracklets -> (\d+) identities", result.stdout)
    assert match and int(match[1]) == len(np.unique(before.id)) and int(match[2]) == len(np.unique(rows.id))
    assert "linked  HOTA" in result.stdout


def test_no_two_boxes_of_a_frame_get_one_identity(linked):
    rows = read_mot(linked[0] / "tracks.txt")  # read_mot refuses an id twice in a frame; checked again here
    pairs = pd.DataFrame({"frame": rows.frame, "id": rows.id})
    assert not pairs.duplicated().any()


def test_each_piece_keeps_to_one_tracklet_and_the_old_ids_map_through_it(clip, linked):
    _, _, tracks, _ = clip
    before, after = read_mot(tracks), read_mot(linked[0] / "tracks.txt")
    old = {(f, t): i for f, t, i in zip(before.frame, before.tail, before.id, strict=True)}
    new = {(f, t): i for f, t, i in zip(after.frame, after.tail, after.id, strict=True)}
    assert old.keys() == new.keys()
    table = pd.read_csv(linked[0] / "identities.csv")
    for track_id, group in table.groupby("track_id"):
        got = {new[k] for k, i in old.items() if i == track_id}
        assert got <= set(group["identity"]), f"tracklet {track_id}'s boxes went to identities of its pieces"


def write_video(sequence, path, fourcc: str, frames: int | None = None) -> bool:
    info = read_seqinfo(sequence)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), info.fps, (info.width, info.height))
    if not writer.isOpened():
        return False
    for frame in range(1, (frames or info.frames) + 1):
        writer.write(cv2.imread(str(info.frame_path(sequence, frame))))
    writer.release()
    return True


def test_a_video_gives_what_its_frames_give(clip, linked, tmp_path):
    sequence, *_ = clip
    video = tmp_path / "game.avi"
    if not write_video(sequence, video, "FFV1"):  # lossless: the same pixels as the JPEG frames
        pytest.skip("this OpenCV build writes no FFV1 video")
    result = link(clip, tmp_path / "out", f"--video={video}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "tracks.txt").read_text() == (linked[0] / "tracks.txt").read_text()
    assert pd.read_csv(tmp_path / "out" / "identities.csv").equals(pd.read_csv(linked[0] / "identities.csv"))
    assert "HOTA" not in result.stdout, "a video has no ground truth beside it"


def test_a_lossy_video_keeps_every_row(clip, tmp_path):
    sequence, _, tracks, _ = clip
    video = tmp_path / "game.mp4"
    if not write_video(sequence, video, "mp4v"):
        pytest.skip("this OpenCV build writes no mp4v video")
    result = link(clip, tmp_path / "out", f"--video={video}")
    assert result.returncode == 0, result.stderr
    assert tails(tmp_path / "out" / "tracks.txt") == tails(tracks)


def test_tracks_past_the_end_of_a_video_are_refused(clip, tmp_path):
    sequence, _, tracks, _ = clip
    video = tmp_path / "short.avi"
    if not write_video(sequence, video, "FFV1", frames=5):
        pytest.skip("this OpenCV build writes no FFV1 video")
    frame = read_mot(tracks).frame
    past = frame[frame > 5]
    out = tmp_path / "out"
    refused(link(clip, out, f"--video={video}"), out,
            f"{tracks}: {len(past)} rows are past the end of {video} (5 frames), the first frame {past[0]}")


def refused(result, out, words: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in re.split(r"[\r\n]", result.stderr) if line.strip()]  # past progress bars
    assert [line for line in lines if line.startswith("error:")] == [f"error: {words}"] == lines[-1:]
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")], "nothing left beside out_dir"


def edited_tracks(clip, tmp_path, extra: str):
    """The tracker's file with `extra` appended; returns it and the 1-based row of the first added line."""
    text = clip[2].read_text()
    path = tmp_path / "tracks.txt"
    path.write_text(text + extra)
    return path, len(text.splitlines()) + 1


@pytest.mark.parametrize("extra, words", [
    ("5,1,2,3\n", "4 comma-separated columns, expected at least 6 (frame,id,x,y,w,h[,conf,...])"),
    ("2.5,900,10,10,20,40,1,-1,-1,-1\n", "frame '2.5' is not a whole number of at least 1"),
    ("3,900,10,10,0,40,1,-1,-1,-1\n", "box 0 x 40: width and height must be positive"),
    ("3,900,10,nan,10,40,1,-1,-1,-1\n", "y 'nan' is not a finite number"),
])
def test_a_bad_tracks_row_is_named_by_file_and_row(clip, tmp_path, extra, words):
    path, row = edited_tracks(clip, tmp_path, extra)
    out = tmp_path / "out"
    refused(link(clip, out, f"--tracks={path}"), out, f"{path} row {row}: {words}")


def test_a_frame_past_the_sequence_is_refused(clip, tmp_path):
    sequence = clip[0]
    frames = read_seqinfo(sequence).frames
    path, _ = edited_tracks(clip, tmp_path, f"{frames + 1},900,10,10,20,40,1,-1,-1,-1\n")
    out = tmp_path / "out"
    refused(link(clip, out, f"--tracks={path}"), out,
            f"{path}: 1 rows are past the end of {sequence / 'img1'} ({frames} frames), the first frame {frames + 1}")


def test_an_empty_tracks_file_is_refused(clip, tmp_path):
    path = tmp_path / "tracks.txt"
    path.write_text("")
    out = tmp_path / "out"
    refused(link(clip, out, f"--tracks={path}"), out, f"{path}: no tracks in it (an empty file)")


def test_a_missing_frame_image_is_named(clip, tmp_path):
    sequence = shutil.copytree(clip[0], tmp_path / "seq")
    frame = int(np.median(read_mot(clip[2]).frame))
    gone = sequence / "img1" / f"{frame:06d}.jpg"
    gone.unlink()
    out = tmp_path / "out"
    # every box sampled, so the missing frame is read whichever boxes sampling would pick
    result = link(clip, out, f"--sequence={sequence}", "--samples=100000")
    refused(result, out, f"{gone}: no such frame (the tracks have boxes in frame {frame})")


def test_a_file_that_is_no_video_is_refused(clip, tmp_path):
    video = tmp_path / "game.mp4"
    video.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out = tmp_path / "out"
    refused(link(clip, out, f"--video={video}"), out,
            f"--video={video}: OpenCV cannot read a frame of it (not a video, or a codec it lacks)")
    refused(link(clip, out, f"--video={tmp_path / 'absent.mp4'}"), out, f"--video={tmp_path / 'absent.mp4'}: "
                                                                         "no such file")


def test_frames_come_from_a_sequence_or_a_video_not_both(clip, tmp_path):
    sequence, model, tracks, _ = clip
    out = tmp_path / "out"
    words = "give the frames: --sequence=<MOT sequence folder> or --video=<file>, one of them"
    neither = call("link_tracks.py", f"--tracks={tracks}", f"--checkpoints={model}", f"--out_dir={out}", *FAST)
    refused(neither, out, words)
    (tmp_path / "game.mp4").write_bytes(b"")
    both = link(clip, out, f"--sequence={sequence}", f"--video={tmp_path / 'game.mp4'}")
    refused(both, out, words)


@pytest.mark.parametrize("where", ["linking", "writing"])
def test_an_interrupted_link_leaves_no_out_dir(clip, tmp_path, monkeypatch, where):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "linking":  # once the crops are embedded: what link_tracklets calls, or the stage itself
        monkeypatch.setattr(reid.linking, "link", interrupted)
        monkeypatch.setattr(link_tracks, "link", interrupted, raising=False)
    else:  # half-way through the output folder: tracks.txt and identities.csv already staged
        monkeypatch.setattr(link_tracks, "identity_sheet", interrupted)
    out = tmp_path / "out"
    result = link(clip, out)
    assert result.returncode == 130 and result.stderr.endswith("interrupted\n")
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging or lock left behind"
