"""Images in, model input out: reading any image, and the one evaluation preprocessing.

Imports no torch (nor albumentations, which imports torch when it can): every embedder
(reid.embedding), `OnnxEmbedder` included, preprocesses with this module alone, so a model
exported to ONNX sees exactly the input it saw in validation. The training pipeline
(reid.transforms) resizes and normalises with albumentations; tests hold the two to the same
pixels.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence, Union

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from reid.errors import ReidError
from reid.rules import Count, Finite, Positive, PositiveInt, checked

INTERPOLATIONS = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST,
                  "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
SUFFIXES = (".jpg", ".jpeg", ".png")  # the image files a folder of crops is read for
RESIZE_RULE = "longest side to img_size keeping the aspect ratio, then zero padding centred to a square"
PROGRESS_DELAY = 2.0  # seconds a scan or an image check runs before its progress shows
JPEG_END = b"\xff\xd9"
JPEG_TAIL = 64  # bytes at the end of a JPEG its end marker is looked for in
JPEG_PADDING = b"\xff\x00" * 16  # stuffed one-bits: 128 bits, twice libjpeg's look-ahead
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)

ImageLike = Union[str, Path, Image.Image, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What an encoder expects of its input; saved with a checkpoint so features match later."""

    img_size: int  # square side the weights were trained at
    mean: tuple[float, float, float]  # per channel, on pixels scaled to [0, 1]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        """Undo `to_dict` after a round trip through a checkpoint (lists back to tuples)."""
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})


def usable_cores() -> int:
    """The cores this process may use (its CPU affinity, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decoding threads: as many as usable cores, up to 8."""
    return min(8, usable_cores())


def interpolation_flag(name: str) -> int:
    """OpenCV's flag for an interpolation name; names OpenCV lacks (timm's "random") are bilinear."""
    return INTERPOLATIONS.get(name, cv2.INTER_LINEAR)


def _reason(exc: BaseException) -> str:
    """The one-line why of a decoding failure, without the path the caller names anyway."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def pil_rgb(image: Image.Image) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array of a PIL image of any mode. PIL's own conversion clips 16-bit
    and 32-bit pixels to 255 (a 16-bit grayscale crop turns white), so those are scaled to 8 bits
    by their range: the full 16-bit range for I;16, and for I above 255; [0, 1] for a float image
    within it (a 0-255 image that dark is black either way). Palette, alpha, CMYK: as PIL does."""
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return np.asarray(image.convert("RGB"))
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    top = float(values.max(initial=0))
    full = 65535.0 if image.mode.startswith("I;16") or top > 255 else 1.0 if image.mode == "F" and top <= 1 else 255.0
    gray = np.rint(np.clip(values * (255.0 / full), 0, 255)).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def _jpeg_source(path: Path, progressive: bool) -> io.BytesIO:
    """A JPEG's bytes to decode, refused without an end marker. For a baseline JPEG the marker
    is replaced by stuffed one-bits: cut short and given an end marker, such a file decodes
    without an error (libjpeg only warns, and fills the rest grey), but without the marker its
    decoder runs out of data, which PIL refuses. A whole image reads no more of the padding than
    its look-ahead (libjpeg's 57-bit buffer), and one-bits are no Huffman code, so a cut image
    gets no more than a few blocks out of it. A progressive JPEG is decoded only once all its
    scans are in, so it keeps its marker (and a cut one goes undetected)."""
    data = path.read_bytes()
    end = data.rfind(JPEG_END, max(0, len(data) - JPEG_TAIL))
    if end < 0:
        raise ValueError("truncated JPEG (no end marker)")
    return io.BytesIO(data if progressive else data[:end] + JPEG_PADDING)


def _decode(path: Path) -> np.ndarray:
    """Every pixel of the image at `path`, as `pil_rgb` gives them: the one test of readability,
    shared by `read_image` and `image_problem`. Raises one of DECODE_ERRORS."""
    if path.is_symlink() and not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"broken link to {os.readlink(path)}")
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError("empty file")
    with Image.open(path) as img:
        if img.format != "JPEG":
            return pil_rgb(img)
        progressive = bool(img.info.get("progressive"))
    with Image.open(_jpeg_source(path, progressive)) as img:
        try:
            img.load()
        except OSError:
            raise ValueError("JPEG data cut short or corrupt") from None
        return pil_rgb(img)


def read_image(path: str | Path) -> np.ndarray:
    """An image as an (H, W, 3) uint8 RGB array; a file `image_problem` refuses names its path."""
    try:
        return _decode(Path(path))
    except DECODE_ERRORS as exc:
        raise ReidError(f"cannot read image {path}: {_reason(exc)}") from None


def image_problem(path: Path) -> str | None:
    """Why an image cannot be used, found by decoding it in full as `read_image` does (a corrupt
    PNG stream or a JPEG cut short passes any cheaper look, then stops a run hours in); None
    when it can be read."""
    try:
        _decode(Path(path))
    except DECODE_ERRORS as exc:
        return _reason(exc)
    return None


def unreadable(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """(path, why) of each image that `image_problem` finds unusable, in input order. Decoded on
    threads (PIL releases the GIL), with a bar on stderr once the check takes a while."""
    paths = [Path(p) for p in paths]
    problems = []
    with ThreadPoolExecutor(default_workers()) as pool, tqdm(
            total=len(paths), desc="checking images", unit="img", leave=False, delay=PROGRESS_DELAY) as bar:
        for problem in pool.map(image_problem, paths):
            problems.append(problem)
            bar.update()
    return [(p, problem) for p, problem in zip(paths, problems, strict=True) if problem]


def listed(bad: list[tuple[Path, str]]) -> str:
    """The first five of `unreadable`'s findings, and how many more, for a one-line message."""
    shown = "; ".join(f"{p} ({problem})" for p, problem in bad[:5])
    return shown + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")


def require_images(paths: Iterable[Path], what: str) -> None:
    """Refuse, in one message listing them, images that `image_problem` finds unusable."""
    bad = unreadable(paths)
    if bad:
        raise ReidError(f"{len(bad)} unreadable images in {what}: {listed(bad)}")


def _broken_link(entry: os.DirEntry) -> bool:
    return entry.is_symlink() and not os.path.exists(entry.path)


def find_images(folder: Path, progress: bool = False) -> list[Path]:
    """Every .jpg, .jpeg and .png below `folder`, as paths relative to it, sorted as text; hidden
    files and folders are skipped. Linked folders are followed, each real folder once (a link
    back up is no loop); a broken link with an image's name is listed, for the image check to
    name. A folder that cannot be listed is refused. The count of folders and images goes to
    stderr while scanning, from the start with `progress`, else once the scan takes a while."""
    folder = Path(folder)
    found: list[Path] = []
    seen: set[str] = set()
    pending = [folder]
    with tqdm(desc=f"scanning {folder}", unit=" folders", leave=False, delay=0 if progress else PROGRESS_DELAY) as bar:
        while pending:
            here = pending.pop()
            real = os.path.realpath(here)
            if real in seen:
                continue
            seen.add(real)
            try:
                with os.scandir(here) as scan:
                    entries = sorted((e for e in scan if not e.name.startswith(".")), key=lambda e: e.name,
                                     reverse=True)
                    folders = [Path(e.path) for e in entries if e.is_dir()]
                    images = [Path(e.path) for e in entries if e.name.lower().endswith(SUFFIXES)
                              and (e.is_file() or _broken_link(e))]
            except OSError as exc:
                raise ReidError(f"{here}: cannot list this folder ({_reason(exc)}), so its images would be "
                                "missed: make it readable, or look below or beside it") from None
            pending += folders
            found += [p.relative_to(folder) for p in images]
            bar.set_postfix_str(f"{len(found)} images", refresh=False)
            bar.update()
        if progress:
            bar.refresh()  # the final count, however quick the scan
    return sorted(found, key=str)


def pil_problem(image: Image.Image) -> str | None:
    """Why a PIL image has no pixels to convert (empty, or closed before its pixels were read);
    None when it has them. Loading here is the decoding the conversion would do anyway."""
    if 0 in image.size:
        return f"a PIL image of {image.width} x {image.height} pixels; expected at least 1 x 1"
    try:
        image.load()
    except (OSError, ValueError) as exc:
        return f"a PIL image whose pixels cannot be read ({exc}): pass it before closing it, or its file path"
    return None


@checked
def as_rgb(item: ImageLike, index: Count) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from a file path, a PIL image or such an array; anything
    else is refused, naming its position in the input."""
    if isinstance(item, (str, Path)):
        return read_image(item)
    if isinstance(item, Image.Image):
        if problem := pil_problem(item):
            raise ReidError(f"images[{index}]: {problem}")
        return pil_rgb(item)
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8 or 0 in item.shape:
            raise ReidError(f"images[{index}]: an array of shape {item.shape} and dtype {item.dtype}; "
                            "expected H x W x 3 uint8 RGB")
        return item
    raise ReidError(f"images[{index}]: a {type(item).__name__}; expected a file path, a PIL image "
                    "or an H x W x 3 uint8 RGB array")


@checked
def resize_pad(image: np.ndarray, size: PositiveInt, interpolation: str) -> np.ndarray:
    """The longest side to `size`, then zero padding centred to a square: keeps a player's
    proportions (albumentations' LongestMaxSize + PadIfNeeded, pixel for pixel)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation_flag(interpolation))
    top, left = (size - new_h) // 2, (size - new_w) // 2
    return cv2.copyMakeBorder(image, top, size - new_h - top, left, size - new_w - left,
                              cv2.BORDER_CONSTANT, value=(0, 0, 0))


@checked
def normalize_chw(image: np.ndarray, mean: Sequence[Finite], std: Sequence[Positive]) -> np.ndarray:
    """(pixel / 255 - mean) / std per channel, as a (3, H, W) float32 array; computed through the
    same float32 lookup table as albumentations' Normalize, so the values are identical."""
    shift = np.asarray(mean, dtype=np.float32) * 255.0
    scale = np.reciprocal(np.asarray(std, dtype=np.float32) * 255.0)
    tables = (np.arange(256, dtype=np.float32) - shift[:, None]) * scale[:, None]
    return np.stack([tables[c][image[..., c]] for c in range(3)])


def preprocess(image: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """The evaluation transform: an RGB uint8 image -> the (3, S, S) float32 model input."""
    return normalize_chw(resize_pad(image, cfg.img_size, cfg.interpolation), cfg.mean, cfg.std)

