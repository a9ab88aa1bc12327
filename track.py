"""Stage 8: a sequence's detections -> tracklets, by a real multi-object tracker (Roboflow `trackers`).

    python track.py --sequence=data/clips/clips/synth-0-01 --out=outputs/track/synth-0-01.txt
    python track.py --sequence=SEQ --detections=my_det.txt --tracker=ocsort --out=tracks.txt

Reads `SEQ/det/det.txt` (MOT txt, id -1) unless --detections names another file, the frame rate
and length from `SEQ/seqinfo.ini`, and writes the tracks in MOT txt (frame,id,x,y,w,h,conf,-1,-1,-1),
what link_tracks.py starts from. Why this library: reid/tracking.py. README.md, stage 8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid.config import format_config, run
from reid.errors import ReidError
from reid.mot import check_frames, read_mot, read_seqinfo, write_mot
from reid.outputs import refuse_overlap
from reid.rules import Checked, NonNegative, PositiveInt
from reid.track_metrics import scores_line, tracking_scores
from reid.tracking import Tracker, track


@dataclass
class Config(Checked):
    sequence: Path = Path("sequence")  # a MOT sequence folder: seqinfo.ini, det/det.txt (gt/gt.txt to score)
    detections: Path | None = None  # MOT txt of detections (default: <sequence>/det/det.txt)
    out: Path = Path("outputs/track/tracks.txt")  # the tracks, MOT txt
    tracker: Tracker = "bytetrack"  # bytetrack, ocsort or sort
    lost_frames: PositiveInt = 30  # frames a lost track waits for its person to be detected again
    min_conf: NonNegative = 0.1  # detections below this confidence are not given to the tracker


def main(cfg: Config) -> None:
    print(format_config(cfg))
    info = read_seqinfo(cfg.sequence)
    source = cfg.detections or cfg.sequence / "det" / "det.txt"
    if cfg.out.is_dir():
        raise ReidError(f"--out={cfg.out}: a folder; give the tracks file's path")
    refuse_overlap(cfg.out, "out", [("detections", source)])
    detections = read_mot(source, "detections")
    check_frames(detections, info.frames, f"{cfg.sequence / 'seqinfo.ini'}")
    frame, ids, box, conf = track(detections, info.frames, cfg.tracker, info.fps, cfg.lost_frames, cfg.min_conf,
                                  progress=True)
    write_mot(cfg.out, frame, ids, box, conf)
    print(f"{len(detections)} detections -> {len(frame)} boxes in {len(np.unique(ids))} tracklets ({cfg.tracker}); "
          f"wrote {cfg.out}")
    truth = cfg.sequence / "gt" / "gt.txt"
    if truth.is_file():
        print(f"against {truth}: {scores_line(tracking_scores(truth, cfg.out))}")


if __name__ == "__main__":
    run(main, Config)
