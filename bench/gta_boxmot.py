"""BoxMOT's GTA on given tracks and features: run by bench/link_tracks.py in BoxMOT's own environment.

    .venv-boxmot/bin/python bench/gta_boxmot.py IN.npz OUT.txt [split|connect] [MERGE_DISTANCE]

IN.npz holds every box of a tracks file (frame, id, box xywh, conf) and its unit feature (feat);
OUT.txt gets the boxes with GTA's ids. GTA (Sun et al., ACCV 2024 workshop) as BoxMOT 25 ships
its algorithms (`boxmot.postprocessing.gta`), with their defaults: the splitter (DBSCAN, eps
0.7, min_samples 10, at most 3 identities a tracklet, tracklets of 100 boxes or more) and the
batched connector (cosine distance below 0.4, batches of 50), and the paper's spatial factor 1.
`connect` runs the connector alone (the paper's ablation without the splitter);
MERGE_DISTANCE replaces the connector's cosine-distance threshold (default 0.4).
This file imports only BoxMOT and NumPy, so it needs none of this project's packages; BoxMOT
pins pandas<3 and opencv-python<5, hence an environment of its own (make boxmot-env).
"""

from __future__ import annotations

import sys

import numpy as np

SPATIAL_FACTOR = 1.0


def main(source: str, out: str, steps: str = "split", merge_distance: str = "0.4") -> None:
    from boxmot.postprocessing.gta import Tracklet, get_spatial_constraints, merge_tracklets_batched, split_tracklets

    data = np.load(source)
    frame, ids, box, conf, feat = data["frame"], data["id"], data["box"], data["conf"], data["feat"]
    tracklets = {}
    for t in np.unique(ids):
        rows = np.flatnonzero(ids == t)
        rows = rows[np.argsort(frame[rows], kind="stable")]
        tracklets[int(t)] = Tracklet(int(t), frame[rows].tolist(), conf[rows].tolist(), box[rows].tolist(),
                                     feats=list(feat[rows]), classes=[0] * len(rows))
    if steps == "split":
        tracklets = split_tracklets(tracklets)
    max_x, max_y = get_spatial_constraints(tracklets, SPATIAL_FACTOR)
    merged = merge_tracklets_batched(tracklets, max_x_range=max_x, max_y_range=max_y,
                                     merge_dist_thres=float(merge_distance))
    with open(out, "w") as f:
        for new_id, (_, track) in enumerate(sorted(merged.items()), 1):
            for t, b, s in zip(track.times, track.bboxes, track.scores, strict=True):
                f.write(f"{int(t)},{new_id},{b[0]:.2f},{b[1]:.2f},{b[2]:.2f},{b[3]:.2f},{s:.4f},-1,-1,-1\n")


if __name__ == "__main__":
    main(*sys.argv[1:5])
