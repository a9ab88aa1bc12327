"""Detections -> tracklets with a real multi-object tracker: Roboflow's `trackers` library.

Chosen over BoxMOT because it is Apache-2.0 (BoxMOT is AGPL-3.0), installs beside this
project's pins (BoxMOT wants pandas<3 and opencv-python<5), runs on detections alone (no
frames, no model download), and ships SORT, ByteTrack and OC-SORT as the papers define them,
plus a TrackEval-equivalent evaluation (reid/track_metrics.py). Its fragments and id switches
are what a real tracker makes, not a simulation of one.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from tqdm import tqdm

from reid.errors import ReidError
from reid.mot import MotRows
from reid.rules import NonNegative, Positive, PositiveInt, checked

Tracker = Literal["bytetrack", "ocsort", "sort"]


@checked
def make_tracker(name: Tracker = "bytetrack", fps: Positive = 25.0, lost_frames: PositiveInt = 30):
    """A `trackers` tracker, its lost-track buffer `lost_frames` frames at the sequence's rate."""
    import trackers

    cls = {"bytetrack": trackers.ByteTrackTracker, "ocsort": trackers.OCSORTTracker,
           "sort": trackers.SORTTracker}[name]
    return cls(lost_track_buffer=lost_frames, frame_rate=fps)


@checked
def track(detections: MotRows, frames: PositiveInt, tracker: Tracker = "bytetrack", fps: Positive = 25.0,
          lost_frames: PositiveInt = 30, min_conf: NonNegative = 0.0,
          progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(frame, id from 1, xywh box, conf) of every detection the tracker assigned to a track,
    frame by frame over frames 1..`frames` (frames without detections are still stepped, so the
    tracker's clock runs). Detections below `min_conf` are not given to it."""
    import supervision as sv

    keep = detections.conf >= min_conf
    frame, box, conf = detections.frame[keep], detections.box[keep], detections.conf[keep]
    order = np.argsort(frame, kind="stable")
    frame, box, conf = frame[order], box[order], conf[order]
    starts = np.searchsorted(frame, np.arange(1, frames + 2))
    model = make_tracker(tracker, fps, lost_frames)
    out_frame, out_id, out_box, out_conf = [], [], [], []
    for t in tqdm(range(1, frames + 1), desc=f"tracking ({tracker})", unit="frame", leave=False,
                  disable=not progress):
        lo, hi = starts[t - 1], starts[t]
        xyxy = np.concatenate([box[lo:hi, :2], box[lo:hi, :2] + box[lo:hi, 2:]], axis=1)
        dets = sv.Detections(xyxy=xyxy.astype(np.float32).reshape(-1, 4), confidence=conf[lo:hi].astype(np.float32))
        result = model.update(dets)
        assigned = result.tracker_id >= 0
        if assigned.any():
            out_frame.append(np.full(int(assigned.sum()), t))
            out_id.append(result.tracker_id[assigned] + 1)
            xyxy = result.xyxy[assigned].astype(np.float64)
            out_box.append(np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1))
            out_conf.append(np.asarray(result.confidence[assigned], dtype=np.float64))
    if not out_frame:
        raise ReidError(f"{detections.path}: the tracker confirmed no track from its {len(detections)} detections")
    return (np.concatenate(out_frame), np.concatenate(out_id).astype(np.int64), np.concatenate(out_box),
            np.concatenate(out_conf))
