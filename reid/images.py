"""Images in, model input out: reading any image, and the one evaluation preprocessing.

Imports no torch (nor albumentations, which imports torch when it can): `OnnxEmbedder` runs
on this module alone, so a model exported to ONNX sees exactly the input it saw in
validation. The training pipeline (reid.transforms) resizes and normalises with
albumentations; tests hold the two to the same pixels.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, Union

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from reid.errors import ReidError

INTERPOLATIONS = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST,
                  "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
SUFFIXES = (".jpg", ".jpeg", ".png")  # the image files a folder of crops is read for
RESIZE_RULE = "longest side to img_size keeping the aspect ratio, then zero padding centred to a square"

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


def read_image(path: str | Path) -> np.ndarray:
    """An image as an (H, W, 3) uint8 RGB array; a corrupt or unreadable file names its path."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ReidError(f"cannot read image {path}: {exc}") from None


def image_problem(path: Path) -> str | None:
    """Why an image cannot be used, from a cheap look (its size, header and, for a JPEG, its end
    marker); None when it looks whole. Catches empty, foreign and truncated files before hours
    of training, without decoding every pixel."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file"
        with Image.open(path) as img:
            kind = img.format
        if kind == "JPEG":
            with open(path, "rb") as f:
                f.seek(max(0, size - 64))
                if b"\xff\xd9" not in f.read():
                    return "truncated JPEG (no end marker)"
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def unreadable(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """(path, why) of each image that `image_problem` finds unusable."""
    return [(Path(p), problem) for p in paths if (problem := image_problem(Path(p)))]


def listed(bad: list[tuple[Path, str]]) -> str:
    """The first five of `unreadable`'s findings, and how many more, for a one-line message."""
    shown = "; ".join(f"{p} ({problem})" for p, problem in bad[:5])
    return shown + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")


def require_images(paths: Iterable[Path], what: str) -> None:
    """Refuse, in one message listing them, images that `image_problem` finds unusable."""
    bad = unreadable(paths)
    if bad:
        raise ReidError(f"{len(bad)} unreadable images in {what}: {listed(bad)}")


def find_images(folder: Path) -> list[Path]:
    """Every .jpg, .jpeg and .png below `folder`, as paths relative to it, sorted as text;
    hidden files and folders are skipped."""
    found = (p.relative_to(folder) for p in Path(folder).rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    return sorted((p for p in found if not any(part.startswith(".") for part in p.parts)), key=str)


def as_rgb(item: ImageLike, index: int) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from a file path, a PIL image or such an array; anything
    else is refused, naming its position in the input."""
    if isinstance(item, (str, Path)):
        return read_image(item)
    if isinstance(item, Image.Image):
        return np.asarray(item.convert("RGB"))
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8 or 0 in item.shape:
            raise ReidError(f"images[{index}]: an array of shape {item.shape} and dtype {item.dtype}; "
                            "expected H x W x 3 uint8 RGB")
        return item
    raise ReidError(f"images[{index}]: a {type(item).__name__}; expected a file path, a PIL image "
                    "or an H x W x 3 uint8 RGB array")


def resize_pad(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
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


def normalize_chw(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(pixel / 255 - mean) / std per channel, as a (3, H, W) float32 array; computed through the
    same float32 lookup table as albumentations' Normalize, so the values are identical."""
    shift = np.asarray(mean, dtype=np.float32) * 255.0
    scale = np.reciprocal(np.asarray(std, dtype=np.float32) * 255.0)
    tables = (np.arange(256, dtype=np.float32) - shift[:, None]) * scale[:, None]
    return np.stack([tables[c][image[..., c]] for c in range(3)])


def preprocess(image: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """The evaluation transform: an RGB uint8 image -> the (3, S, S) float32 model input."""
    return normalize_chw(resize_pad(image, cfg.img_size, cfg.interpolation), cfg.mean, cfg.std)


def _load(item: ImageLike, index: int, cfg: DataConfig) -> np.ndarray:
    return preprocess(as_rgb(item, index), cfg)


def batches(images: Sequence[ImageLike], cfg: DataConfig, batch_size: int,
            workers: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, (B, 3, S, S) float32 batch) over `images` in order. Decoding and resizing run on
    `workers` threads (PIL and OpenCV release the GIL) while the caller runs the model on the
    batch before: one batch ahead, so memory stays two batches whatever the input size."""
    if batch_size < 1:
        raise ReidError(f"batch_size={batch_size}: must be at least 1")
    with ThreadPoolExecutor(max(1, workers)) as pool:
        ahead: tuple[int, list[Future]] | None = None
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            submitted = (start, [pool.submit(_load, item, start + i, cfg) for i, item in enumerate(chunk)])
            if ahead is not None:
                yield ahead[0], np.stack([f.result() for f in ahead[1]])
            ahead = submitted
        if ahead is not None:
            yield ahead[0], np.stack([f.result() for f in ahead[1]])


def embed_batches(run: Callable[[np.ndarray], np.ndarray], images: Sequence[ImageLike], cfg: DataConfig, dim: int,
                  batch_size: int, workers: int, progress: bool, desc: str) -> np.ndarray:
    """(N, dim) float32 outputs of `run` on each preprocessed batch of `images`, in input order:
    the loop every embedder shares, whatever runs the model."""
    images = list(images)
    out = np.empty((len(images), dim), dtype=np.float32)
    with tqdm(total=len(images), desc=desc, unit="img", leave=False, disable=not progress) as bar:
        for start, batch in batches(images, cfg, batch_size, workers):
            out[start:start + len(batch)] = run(batch)
            bar.update(len(batch))
    return out


def scaled_sizes(img_size: int, scales: Sequence[float]) -> list[int]:
    """The input size, in pixels, of each test-time scale of a model trained at `img_size`."""
    if not scales or min(scales) <= 0:
        raise ReidError(f"scales must be positive numbers (got {', '.join(map(str, scales)) or 'none'})")
    return [max(1, round(img_size * s)) for s in scales]


def embed_at_scales(run: Callable[[np.ndarray], np.ndarray], images: Sequence[ImageLike], cfg: DataConfig,
                    scales: Sequence[float], accepts: Callable[[int], bool], model: str, dim: int, batch_size: int,
                    workers: int, progress: bool, desc: str) -> np.ndarray:
    """`embed_batches` at the input size of each of `scales`, the unit-length rows averaged and
    normalised again (multi-scale test-time augmentation); scale 1 alone is `embed_batches`
    itself. A size the model does not take (`accepts`) is refused in one line, before any work."""
    sizes = scaled_sizes(cfg.img_size, scales)
    if refused := [s for s in sizes if not accepts(s)]:
        raise ReidError(f"{model} takes {cfg.img_size}-pixel input only, not {', '.join(map(str, refused))}: "
                        "leave its scales at 1")
    images = list(images)
    out = None
    for size in sizes:
        f = embed_batches(run, images, dataclasses.replace(cfg, img_size=size), dim, batch_size, workers, progress,
                          desc if len(sizes) == 1 else f"{desc} {size}px")
        out = f if out is None else out + f
    if len(sizes) > 1:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.finfo(np.float32).tiny)
    return out
