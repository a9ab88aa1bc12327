"""`BaseEmbedder`: the one `embed` every embedder shares, whatever runs the model.

A subclass supplies its feature size and `run_batch` (one preprocessed batch to unit-length
features): `reid.embedder.Embedder` on PyTorch, `reid.onnx_embedder.OnnxEmbedder` on
onnxruntime. The base owns the rest, once for both: what `embed` takes, batching with decoding
one batch ahead, multi-scale test-time augmentation and the sizes a model takes, the
out-of-memory message, and sharing the images among torchrun's processes. Imports no torch, so
that `OnnxEmbedder` runs where PyTorch is not installed.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated, Any, ContextManager, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from reid.errors import ReidError
from reid.images import DataConfig, ImageLike, as_rgb, default_workers, preprocess
from reid.rules import Count, Items, Positive, PositiveInt, checked

if TYPE_CHECKING:
    from reid.device import RankContext

SCALED_SIDES = range(16, 2049)  # the pixel sizes a test-time scale may give, besides the trained size
Scales = Annotated[tuple[Positive, ...], Items()]  # multiples of the trained input size, at least one


def image_sequence(images: Iterable[ImageLike]) -> list[ImageLike]:
    """`images` as a list, refused in one line when it is one image or one path rather than a
    sequence of them (a string would be read letter by letter, an image row by row). One
    N x H x W x 3 array is N images."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, (str, bytes, bytearray, os.PathLike, Image.Image, np.ndarray)) or not isinstance(
            images, Iterable):
        raise ReidError(f"images: a {type(images).__name__}, not a sequence of images: pass a list, [image] "
                        "for one (file paths, PIL images, H x W x 3 uint8 RGB arrays), or an N x H x W x 3 array")
    return list(images)


def _load(item: ImageLike, index: int, cfg: DataConfig) -> np.ndarray:
    return preprocess(as_rgb(item, index), cfg)


@checked
def batches(images: Sequence[ImageLike], cfg: DataConfig, batch_size: PositiveInt,
            workers: Count) -> Iterator[tuple[int, np.ndarray]]:
    """(start, (B, 3, S, S) float32 batch) over `images` in order. Decoding and resizing run on
    `workers` threads (PIL and OpenCV release the GIL) while the caller runs the model on the
    batch before: one batch ahead, so memory stays two batches whatever the input size."""
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


def out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure (numpy's MemoryError, torch's OutOfMemoryError on
    CUDA or its CPU allocator's RuntimeError, onnxruntime's): a fault of the batch's size, never
    of the images or of what a model takes. Told by type and message, so no torch is imported."""
    text = str(exc).lower()
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or any(words in text for words in ("out of memory", "can't allocate memory", "failed to allocate")))


@checked
def scaled_sizes(img_size: PositiveInt, scales: Scales) -> list[int]:
    """The input size, in pixels, of each test-time scale of a model trained at `img_size`. Sizes
    other than the trained one must lie in SCALED_SIDES: below, a crop is a few pixels of mush;
    above, one image of a large backbone takes gigabytes, and the run would die on memory."""
    sizes = [round(img_size * s) for s in scales]
    for scale, size in zip(scales, sizes, strict=True):
        if size != img_size and size not in SCALED_SIDES:
            raise ReidError(f"scale {scale:g} makes {size}-pixel input of a model trained at {img_size}: "
                            f"test-time sizes must be {SCALED_SIDES.start} to {SCALED_SIDES.stop - 1} pixels")
    return sizes


class BaseEmbedder(abc.ABC):
    """From any images to unit-length features, in input order.

    Test-time augmentation: `scales` embeds every image at each multiple of the trained input
    size and averages the unit-length features (the default, 1.0 alone, is the trained size). A
    model that does not take one of those sizes is refused in one line, or, with
    `own_size_if_refused`, embedded at its own size alone (identify.py says so and goes on).
    `name` names the model in messages; `workers` decode images (default: `default_workers`).
    """

    @checked
    def __init__(self, data_config: DataConfig, name: str, workers: Count | None = None,
                 scales: Scales = (1.0,), own_size_if_refused: bool = False):
        self.data_config = data_config
        self.name = name
        self.workers = default_workers() if workers is None else workers
        self.scales = tuple(scales)
        self.own_size_if_refused = own_size_if_refused

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """The length of a feature vector."""

    @abc.abstractmethod
    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """(B, dim) float32 unit-length features of a preprocessed (B, 3, S, S) float32 batch."""

    @checked
    def accepts(self, size: PositiveInt) -> bool:
        """Whether the model takes `size`-pixel input; here its own size alone, as an exported
        graph (a model that takes more says so)."""
        return size == self.data_config.img_size

    def running(self) -> ContextManager[Any]:
        """The state the model is in for one `embed` (PyTorch: eval mode, no autograd); none here."""
        return contextlib.nullcontext()

    def used_scales(self) -> tuple[float, ...]:
        """The scales `embed` embeds at: `scales` when the model takes each of their sizes, else
        its own size alone with `own_size_if_refused`, else a one-line refusal, before any work."""
        size = self.data_config.img_size
        refused = [s for s in scaled_sizes(size, self.scales) if not self.accepts(s)]
        if not refused:
            return self.scales
        if self.own_size_if_refused:
            return (1.0,)
        raise ReidError(f"{self.name} takes {size}-pixel input only, not {', '.join(map(str, refused))}: "
                        "leave its scales at 1")

    @checked
    def embed(self, images: Iterable[ImageLike], batch_size: PositiveInt = 64, progress: bool = False,
              desc: str = "embedding") -> np.ndarray:
        """(N, dim) float32 features of `images` (a list of file paths, PIL images or H x W x 3
        uint8 RGB arrays, mixed, or one N x H x W x 3 array), rows of unit length, in input order.
        Several scales: each size's unit-length rows summed and normalised again; scale 1 alone
        is one pass at the trained size."""
        images = image_sequence(images)
        with self.running():
            sizes = scaled_sizes(self.data_config.img_size, self.used_scales())
            out = None
            for size in sizes:
                f = self._embed_batches(images, dataclasses.replace(self.data_config, img_size=size), batch_size,
                                        progress, desc if len(sizes) == 1 else f"{desc} {size}px")
                out = f if out is None else out + f
        if len(sizes) > 1:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.finfo(np.float32).tiny)
        return out

    @checked
    def embed_across_ranks(self, images: Iterable[ImageLike], ctx: RankContext, batch_size: PositiveInt = 64,
                           progress: bool = False, desc: str = "embedding") -> np.ndarray | None:
        """Each process embeds its contiguous share of `images`; the first gets every row, in input
        order, and the others None. One process embeds them all."""
        images = image_sequence(images)
        if ctx.world_size == 1:
            return self.embed(images, batch_size, progress, desc)
        import torch.distributed as dist  # under torchrun, where torch is there; ONNX alone needs none

        bounds = np.linspace(0, len(images), ctx.world_size + 1).round().astype(int)
        mine = self.embed(images[bounds[ctx.rank]:bounds[ctx.rank + 1]], batch_size, progress, desc)
        parts: list[Any] | None = [None] * ctx.world_size if ctx.main else None
        dist.gather_object(mine, parts, dst=0)
        return np.concatenate(parts) if parts is not None else None

    def _embed_batches(self, images: list[ImageLike], cfg: DataConfig, batch_size: int, progress: bool,
                       desc: str) -> np.ndarray:
        """(N, dim) float32 outputs of `run_batch` on each batch of `images` preprocessed by `cfg`."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        with tqdm(total=len(images), desc=desc, unit="img", leave=False, disable=not progress) as bar:
            try:
                for start, batch in batches(images, cfg, batch_size, self.workers):
                    out[start:start + len(batch)] = self.run_batch(batch)
                    bar.update(len(batch))
            except Exception as exc:  # onnxruntime's errors derive from Exception alone; others pass on as they were
                if not out_of_memory(exc):
                    raise
                raise ReidError(f"out of memory embedding batches of {batch_size} images at {cfg.img_size} px: "
                                "lower batch_size, or the scales") from None
        return out
