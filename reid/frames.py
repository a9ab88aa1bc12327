"""A game's frames, from a MOT sequence's image folder or a video, and the crops its boxes cut.

Frames are visited once, in ascending order, and only those asked for: a whole game is never
held in memory, only the crops taken from it. A missing or unreadable image, a video OpenCV
cannot open, or a frame past its end is one error naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol

import cv2
import numpy as np
from tqdm import tqdm

from reid.errors import ReidError
from reid.images import read_image
from reid.mot import SequenceInfo
from reid.rules import Count, checked

MIN_SIDE = 2  # pixels: a clipped box narrower or lower than this is no crop


class Frames(Protocol):
    """Where frames come from: how many there are, and the frames asked for, in order."""

    name: str
    count: int  # frames (0: unknown, for a video that does not say)
    width: int
    height: int

    def read(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(frame number, H x W x 3 uint8 RGB) for each of the ascending 1-based `wanted`."""
        ...


class ImageFolder:
    """The frames of a MOT sequence folder: `<imDir>/<frame:06d><imExt>`, seqinfo.ini's length."""

    def __init__(self, folder: Path, info: SequenceInfo):
        self.folder, self.info = folder, info
        self.name, self.count = str(folder / info.image_dir), info.frames
        self.width, self.height = info.width, info.height

    def read(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        for frame in wanted:
            path = self.info.frame_path(self.folder, int(frame))
            if not path.is_file():
                raise ReidError(f"{path}: no such frame (the tracks have boxes in frame {frame})")
            yield int(frame), read_image(path)


class Video:
    """The frames of a video file, decoded in order by OpenCV (frame 1 is the first)."""

    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            raise ReidError(f"--video={path}: no such file")
        capture = cv2.VideoCapture(str(path))
        try:
            ok, _ = capture.read()
            if not capture.isOpened() or not ok:
                raise ReidError(f"--video={path}: OpenCV cannot read a frame of it (not a video, or a codec it lacks)")
            self.count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
            self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        finally:
            capture.release()
        self.name = str(path)

    def read(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            at = 0
            for frame in wanted:
                while at < frame - 1:  # skipped frames are grabbed, not converted
                    if not capture.grab():
                        raise ReidError(f"--video={self.path}: ends at frame {at}, before frame {frame} of the tracks")
                    at += 1
                ok, bgr = capture.read()
                if not ok:
                    raise ReidError(f"--video={self.path}: ends at frame {at}, before frame {frame} of the tracks")
                at += 1
                yield int(frame), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()


@checked
def clip_boxes(box: np.ndarray, width: Count, height: Count) -> np.ndarray:
    """(n, 4) x0, y0, x1, y1 integer pixel bounds of xywh boxes cut to the frame."""
    x0 = np.clip(np.floor(box[:, 0]), 0, width)
    y0 = np.clip(np.floor(box[:, 1]), 0, height)
    x1 = np.clip(np.ceil(box[:, 0] + box[:, 2]), 0, width)
    y1 = np.clip(np.ceil(box[:, 1] + box[:, 3]), 0, height)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


@checked
def inside(box: np.ndarray, width: Count, height: Count) -> np.ndarray:
    """(n,) bool: whether at least MIN_SIDE x MIN_SIDE pixels of each xywh box lie in the frame."""
    edges = clip_boxes(box, width, height)
    return (edges[:, 2] - edges[:, 0] >= MIN_SIDE) & (edges[:, 3] - edges[:, 1] >= MIN_SIDE)


def cut_crops(frames: Frames, frame: np.ndarray, box: np.ndarray, progress: bool = False) -> list[np.ndarray | None]:
    """The crop of each box (frame numbers `frame`, xywh `box`) clipped to its frame, None where
    it is not `inside` the frame."""
    order = np.argsort(frame, kind="stable")
    wanted, starts = np.unique(frame[order], return_index=True)
    bounds = np.append(starts, len(order))
    crops: list[np.ndarray | None] = [None] * len(frame)
    with tqdm(total=len(wanted), desc=f"cropping {Path(frames.name).name}", unit="frame", leave=False,
              disable=not progress) as bar:
        for k, (_, image) in enumerate(frames.read(wanted)):
            rows = order[bounds[k]:bounds[k + 1]]
            edges = clip_boxes(box[rows], image.shape[1], image.shape[0])
            for row, (x0, y0, x1, y1) in zip(rows, edges, strict=True):
                if x1 - x0 >= MIN_SIDE and y1 - y0 >= MIN_SIDE:
                    crops[row] = np.ascontiguousarray(image[y0:y1, x0:x1])
            bar.update()
    return crops
