"""The synthetic dataset rewritten into the other layouts preprocess_data.py reads, so tests
and users can try each without a download.

- `folders`: `train/<player>/<sequence>/<frame>.jpeg` from the training split and
  `test/<player>/<sequence>/<frame>.jpeg` from the test split (frame 00, the query, sorts first).
- `market1501`: `bounding_box_train/`, `query/`, `bounding_box_test/` with names
  `{player:04d}_c{camera}s{sequence}_{frame:06d}_00.jpg`. A synthetic sequence is seen by one
  camera; here frame f counts as camera f mod 3 + 1, so that the Market-1501 protocol (same
  player and camera left out) has pairs to leave out.

The challenge split has no place in these layouts and is dropped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from reid.layouts import parse_name

CAMERAS = 3
FOLDERS = {"folders": {"reid_training": "train", "reid_test/query": "test", "reid_test/gallery": "test"},
           "market1501": {"reid_training": "bounding_box_train", "reid_test/query": "query",
                          "reid_test/gallery": "bounding_box_test"}}


def new_path(layout: str, folder: str, name: str) -> str:
    """Where an official-layout image goes in `layout`."""
    player, sequence, frame = parse_name(name)
    target = FOLDERS[layout][folder]
    if layout == "folders":
        return f"{target}/{player}/{sequence}/{frame:02d}.jpeg"
    return f"{target}/{player:04d}_c{frame % CAMERAS + 1}s{sequence}_{frame:06d}_00.jpg"


def relayout(root: Path, layout: str) -> None:
    """Move the official layout under `root` into `layout` (nothing to do for `official`)."""
    if layout == "official":
        return
    for folder in FOLDERS[layout]:
        for path in sorted((root / folder).iterdir()):
            dest = root / new_path(layout, folder, path.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            path.replace(dest)
    for old in ("reid_training", "reid_test", "reid_challenge"):
        shutil.rmtree(root / old)
