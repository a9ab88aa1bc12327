"""MOTChallenge text files and sequence folders: what every tracker writes and every evaluator reads.

A row is `frame,id,x,y,w,h,conf,...` (1-based frames, pixel boxes from the top-left corner);
a detections file has id -1, a tracks file one id per tracklet. A sequence folder holds
`img1/000001.jpg...` and `seqinfo.ini` (MOT17, SportsMOT, TrackEval's layout).

Files are read whole and checked before anything runs: each fault is one line naming the file
and its row (1-based, as an editor shows it). Writing keeps every column after the id as it was
read, so a tracks file rewritten with new ids differs from its input in the id alone.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from reid.errors import ReidError
from reid.files import write_text
from reid.rules import PositiveInt, checked

Kind = Literal["tracks", "detections"]
IMAGE_DIR = "img1"
SEQINFO = "seqinfo.ini"


@dataclass(frozen=True)
class MotRows:
    """The rows of one MOT file, in file order."""

    path: Path
    frame: np.ndarray  # (n,) int64, from 1
    id: np.ndarray  # (n,) int64
    box: np.ndarray  # (n, 4) float64 x, y, w, h
    conf: np.ndarray  # (n,) float64, 1 where the file has no such column
    tail: list[str]  # each row's text after the id (",x,y,w,h,..."), written back unchanged

    def __len__(self) -> int:
        return len(self.frame)


def _fault(path: Path, row: int, text: str) -> ReidError:
    return ReidError(f"{path} row {row}: {text}")


def _integers(path: Path, cells: list[str], rows: list[int], what: str, low: int) -> np.ndarray:
    """Whole numbers (written 12 or 12.0) of at least `low`; the first other one is refused."""
    values = np.array([_number(path, c, r, what) for c, r in zip(cells, rows, strict=True)], dtype=np.float64)
    bad = np.flatnonzero((values != np.round(values)) | (values < low) | (np.abs(values) > 2 ** 53))
    if len(bad):
        i = bad[0]
        raise _fault(path, rows[i], f"{what} {cells[i].strip()!r} is not a whole number of at least {low}")
    return values.astype(np.int64)


def _number(path: Path, cell: str, row: int, what: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise _fault(path, row, f"{what} {cell.strip()!r} is not a number") from None
    if not np.isfinite(value):
        raise _fault(path, row, f"{what} {cell.strip()!r} is not a finite number")
    return value


def read_mot(path: Path | str, kind: Kind = "tracks") -> MotRows:
    """The rows of a MOT file, each checked: at least 6 comma-separated columns, whole frames from
    1, whole ids (from 0 for tracks; detections may have -1), finite boxes of positive width and
    height, a finite confidence, and in a tracks file no id twice in one frame. Blank lines are
    skipped; a file with no row is refused."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ReidError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReidError(f"{path}: cannot be read as text ({exc})") from None
    numbers, cells, tails = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) < 6:
            raise _fault(path, number, f"{len(parts)} comma-separated columns, expected at least 6 "
                                       "(frame,id,x,y,w,h[,conf,...])")
        numbers.append(number)
        cells.append(parts)
        tails.append(line[len(parts[0]) + len(parts[1]) + 1:].rstrip())
    if not numbers:
        raise ReidError(f"{path}: no {kind} in it (an empty file)")
    frame = _integers(path, [c[0] for c in cells], numbers, "frame", 1)
    ids = _integers(path, [c[1] for c in cells], numbers, "id", 0 if kind == "tracks" else -1)
    box = np.array([[_number(path, v, r, name) for v, name in zip(c[2:6], "xywh", strict=True)]
                    for c, r in zip(cells, numbers, strict=True)], dtype=np.float64)
    small = np.flatnonzero((box[:, 2] <= 0) | (box[:, 3] <= 0))
    if len(small):
        i = small[0]
        raise _fault(path, numbers[i], f"box {box[i, 2]:g} x {box[i, 3]:g}: width and height must be positive")
    conf = np.array([_number(path, c[6], r, "conf") if len(c) > 6 else 1.0 for c, r in zip(cells, numbers,
                                                                                             strict=True)])
    if kind == "tracks":
        _refuse_repeats(path, frame, ids, numbers)
    return MotRows(path, frame, ids, box, conf, tails)


def _refuse_repeats(path: Path, frame: np.ndarray, ids: np.ndarray, numbers: list[int]) -> None:
    """A tracker gives one box per id and frame: a second one is a broken file."""
    order = np.lexsort((ids, frame))
    same = np.flatnonzero((frame[order][1:] == frame[order][:-1]) & (ids[order][1:] == ids[order][:-1]))
    if len(same):
        first, again = sorted((order[same[0]], order[same[0] + 1]))
        raise _fault(path, numbers[again], f"id {ids[again]} is already in frame {frame[again]} "
                                           f"(row {numbers[first]}): one box per id and frame")


@checked
def check_frames(rows: MotRows, frames: PositiveInt, source: str) -> None:
    """Refuse a row whose frame is past the end of its sequence or video (`frames` long)."""
    past = np.flatnonzero(rows.frame > frames)
    if len(past):
        i = past[0]
        raise ReidError(f"{rows.path}: {len(past)} rows are past the end of {source} ({frames} frames), the first "
                        f"frame {rows.frame[i]}")


def mot_text(frame: np.ndarray, ids: np.ndarray, tails: list[str]) -> str:
    """MOT rows `frame,id<tail>`, sorted by frame then id (the order evaluators and viewers expect)."""
    order = np.lexsort((ids, frame))
    return "".join(f"{frame[i]},{ids[i]}{tails[i]}\n" for i in order)


def write_mot(path: Path | str, frame: np.ndarray, ids: np.ndarray, box: np.ndarray, conf: np.ndarray) -> Path:
    """A MOT file `frame,id,x,y,w,h,conf,-1,-1,-1`, written atomically."""
    tails = [f",{b[0]:.2f},{b[1]:.2f},{b[2]:.2f},{b[3]:.2f},{c:.4f},-1,-1,-1" for b, c in zip(box, conf, strict=True)]
    return write_text(path, mot_text(np.asarray(frame), np.asarray(ids), tails))


@dataclass(frozen=True)
class SequenceInfo:
    """What seqinfo.ini says of a sequence (MOT17's keys)."""

    name: str
    frames: int
    width: int
    height: int
    fps: float
    image_dir: str = IMAGE_DIR
    image_ext: str = ".jpg"

    def frame_path(self, folder: Path, frame: int) -> Path:
        return folder / self.image_dir / f"{frame:06d}{self.image_ext}"


def read_seqinfo(folder: Path | str) -> SequenceInfo:
    """The `[Sequence]` section of `folder/seqinfo.ini`; its frame count, sizes and rate must be
    positive numbers."""
    folder = Path(folder)
    path = folder / SEQINFO
    if not folder.is_dir():
        raise ReidError(f"--sequence={folder}: not a folder")
    parser = configparser.ConfigParser()
    try:
        if not parser.read(path):
            raise ReidError(f"{path}: no such file (a MOT sequence folder has seqinfo.ini beside {IMAGE_DIR}/)")
    except configparser.Error as exc:
        raise ReidError(f"{path}: not an ini file ({str(exc).splitlines()[0]})") from None
    if "Sequence" not in parser:
        raise ReidError(f"{path}: no [Sequence] section")
    section = parser["Sequence"]

    def positive(key: str, cast: type) -> int | float:
        try:
            value = cast(section[key])
        except KeyError:
            raise ReidError(f"{path}: no {key} in [Sequence]") from None
        except ValueError:
            raise ReidError(f"{path}: {key}={section[key]} is not a {cast.__name__}") from None
        if not value > 0:
            raise ReidError(f"{path}: {key}={section[key]} must be positive")
        return value

    return SequenceInfo(section.get("name", folder.name), int(positive("seqLength", int)),
                        int(positive("imWidth", int)), int(positive("imHeight", int)),
                        float(positive("frameRate", float)), section.get("imDir", IMAGE_DIR),
                        section.get("imExt", ".jpg"))
