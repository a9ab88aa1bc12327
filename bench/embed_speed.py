"""Images per second of `Embedder.embed` and `OnnxEmbedder.embed` against a bare PyTorch loop.

    python -m bench.embed_speed                          # CPU: efficientnet_lite0 at 128, offline
    python -m bench.embed_speed --n_images=2048 --batch_size=128 --threads=2

All three embed the same JPEG files (generated player crops written to a temporary folder)
with the same model, efficientnet_lite0 with its library weights:

- bare loop: PIL decode, `reid.images.preprocess`, stack into batches, `torch.from_numpy` in
  the channels-last layout `embed` uses (on CPU it runs convolutions about 1.7x faster), the
  model under `torch.inference_mode()`, `F.normalize`; one thread of Python, no API;
- `Embedder.embed` (reid.api): the same, with decoding on `workers` threads one batch ahead;
- `OnnxEmbedder.embed` (reid.api): the same model exported with `reid.onnx_export`, run by
  onnxruntime on the CPU, with the same decoding threads.

The three must give the same features (max |diff| <= 1e-4) or the run fails: a speed
comparison of different results means nothing. After one warm-up of each, the methods
alternate in rounds (bare, api, onnx, bare, api, onnx, ...) and the median of each is
compared, so a slow spell of the machine (another process, frequency scaling, a cold cache)
hits all three alike instead of one of them.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.common import measure
from reid.api import Embedder, OnnxEmbedder
from reid.config import run
from reid.errors import ReidError
from reid.files import write_json
from reid.images import default_workers, preprocess
from reid.onnx_embedder import sidecar_path
from reid.onnx_export import export_graph, sidecar
from reid.rules import Checked, Count, PositiveInt
from reid.synthetic.crops import sample_crops

MODEL = "efficientnet_lite0"  # ships offline weights
TOLERANCE = 1e-4  # largest |feature difference| accepted between any two methods
GOAL = 0.8  # Embedder.embed should keep at least this share of the bare loop's speed
OPSET = 18


@dataclass
class Config(Checked):
    n_images: PositiveInt = 512  # JPEG files embedded by each method per round
    img_size: PositiveInt = 128  # square model input side
    batch_size: PositiveInt = 64  # images per forward, the same for all three
    workers: PositiveInt = default_workers()  # decoding threads of Embedder and OnnxEmbedder
    rounds: PositiveInt = 3  # timed rounds, each running bare, api and onnx once (median counts)
    seed: Count = 0  # seed of the generated crops
    threads: Count = 0  # torch and onnxruntime CPU threads; 0: their defaults


def write_crops(crops: list[np.ndarray], folder: Path) -> list[Path]:
    """The crops saved as JPEG files in `folder`, in order."""
    paths = []
    for i, crop in enumerate(crops):
        path = folder / f"{i:05d}.jpeg"
        Image.fromarray(crop).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def bare_loop(embedder: Embedder, paths: list[Path], batch_size: int) -> np.ndarray:
    """The reference: decode, preprocess, batch, forward, normalise, in one thread, no API."""
    cfg, out = embedder.data_config, []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            arrays = []
            for path in paths[start:start + batch_size]:
                with Image.open(path) as img:
                    arrays.append(preprocess(np.asarray(img.convert("RGB")), cfg))
            batch = torch.from_numpy(np.stack(arrays)).contiguous(memory_format=torch.channels_last)
            out.append(F.normalize(embedder.model(batch).float(), dim=-1).numpy())
    return np.concatenate(out)


def export_onnx(embedder: Embedder, examples: list[np.ndarray], folder: Path, workers: int,
                threads: int) -> OnnxEmbedder:
    """The embedder's model as `folder/model.onnx` with its sidecar, as export.py writes them
    (without its verification: the features are compared below)."""
    path = folder / "model.onnx"
    export_graph(embedder, examples, path, OPSET)
    write_json(sidecar(embedder, path), sidecar_path(path))
    return OnnxEmbedder(path, workers=workers, threads=threads)


def check_same(features: dict[str, np.ndarray]) -> float:
    """The largest |difference| between any method's features and the bare loop's; fails
    beyond TOLERANCE."""
    reference = features["bare loop"]
    worst = 0.0
    for name, got in features.items():
        if got.shape != reference.shape:
            raise ReidError(f"{name} gives features of shape {got.shape}, the bare loop {reference.shape}")
        diff = float(np.abs(got - reference).max())
        if not diff <= TOLERANCE:  # NaN fails too
            raise ReidError(f"{name} differs from the bare loop by max |diff| {diff:.2e} "
                            f"(tolerance {TOLERANCE:.0e}): its speed would compare different results")
        worst = max(worst, diff)
    return worst


def main(cfg: Config) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    embedder = Embedder.from_pretrained(MODEL, img_size=cfg.img_size, workers=cfg.workers)
    with tempfile.TemporaryDirectory(prefix="reid-embed-speed-") as tmp:
        folder = Path(tmp)
        crops = sample_crops(cfg.n_images, cfg.seed)
        paths = write_crops(crops, folder)
        onnx = export_onnx(embedder, crops[:2], folder, cfg.workers, cfg.threads)
        methods: dict[str, Callable[[], np.ndarray]] = {
            "bare loop": lambda: bare_loop(embedder, paths, cfg.batch_size),
            "Embedder.embed": lambda: embedder.embed(paths, batch_size=cfg.batch_size),
            "OnnxEmbedder.embed": lambda: onnx.embed(paths, batch_size=cfg.batch_size),
        }
        worst = check_same({name: fn() for name, fn in methods.items()})  # also the warm-up
        times: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(cfg.rounds):
            for name, fn in methods.items():
                times[name].append(measure(fn, 1, trace=False)[1])
    seconds = {name: statistics.median(t) for name, t in times.items()}
    speed = {name: cfg.n_images / s for name, s in seconds.items()}
    print(f"model {MODEL}  img {cfg.img_size}  {cfg.n_images} JPEG files  batch {cfg.batch_size}  "
          f"workers {cfg.workers}  torch threads {torch.get_num_threads()}  onnxruntime threads "
          f"{cfg.threads or 'default'}  rounds {cfg.rounds} (median)")
    print(f"features agree: max |diff| from the bare loop {worst:.1e} (tolerance {TOLERANCE:.0e})")
    print(f"{'method':<20} {'images/s':>10} {'seconds':>9}  rounds (s)")
    for name in methods:
        spread = " ".join(f"{t:.3f}" for t in times[name])
        print(f"{name:<20} {speed[name]:10.1f} {seconds[name]:9.3f}  {spread}")
    api_ratio = speed["Embedder.embed"] / speed["bare loop"]
    print(f"Embedder.embed / bare loop: {api_ratio:.2f}x (goal >= {GOAL}x): {'ok' if api_ratio >= GOAL else 'MISSED'}")
    print(f"OnnxEmbedder / Embedder (CPU): {speed['OnnxEmbedder.embed'] / speed['Embedder.embed']:.2f}x")


if __name__ == "__main__":
    run(main, Config)
