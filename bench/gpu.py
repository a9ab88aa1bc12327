"""One command for a CUDA machine without network: training throughput and re-ranking at scale.

    python -m bench.gpu                                  # H100/H200: EVA-02-L @ 448, re-ranking at 10k and 100k
    python -m bench.gpu --device=cpu --smoke=true        # anywhere: tiny sizes, checks that the script runs

Training: the engine's real step (reid.engine.train_step: the Siamese forward over both images,
InfoNCE, the finite-loss check, AdamW) of a randomly initialised timm model (pretrained=False,
so nothing is downloaded) in bf16 autocast; warm-up steps are not timed. MFU is the model's
FLOPs per step (torch.utils.flop_counter on one pair, with gradient checkpointing off so that
recomputation does not count, times the pairs per step) per second, over the card's dense
bf16 peak. Re-ranking: reid.rerank.rerank_features(..., device=) on clustered, L2-normalised
random features, 6% of them queries (the challenge has 618 of 10,123), after one warm-up run:
its distance blocks and neighbour search run on the device, the sets and the Jaccard step on
the host (docs/RERANKING.md §3); the smallest size is also run on the NumPy path, to show how
far the device's rounding moves it.

Progress goes to stderr; stdout gets exactly one JSON line. Goals on one H100/H200: MFU >= 35%,
re-ranking of 100k images < 5 s; the whole run takes a few minutes.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import sys
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import torch

from bench.common import features
from bench.train_throughput import engine_step, model_flops, timed
from reid.config import run
from reid.device import Amp, amp_dtype, resolve_device
from reid.errors import ReidError
from reid.models import build_encoder
from reid.rerank import rerank_features
from reid.rules import Checked, Count, NonNegative, PositiveInt, Probability, Range

Images = Annotated[int, Range(lo=2)]  # a re-ranking needs a query and a gallery image


@dataclass
class Config(Checked):
    device: Literal["cuda", "cpu"] = "cuda"  # where to run (cpu: for --smoke=true runs)
    smoke: bool = False  # tiny sizes (overrides the model, sizes and steps): shows that the script runs
    model: str = "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k"  # timm name, random init (no download)
    img_size: PositiveInt = 448  # square input side
    batch_size: PositiveInt = 32  # pairs per step (64 images): the recipe's per-GPU batch
    amp: Amp = "bf16"  # autocast dtype on CUDA (CPU runs fp32)
    grad_checkpointing: bool = False  # recompute activations in backward (switched on by itself if out of memory)
    compile: bool = False  # torch.compile the encoder (off: eager is what the engine runs)
    warmup_steps: Count = 3  # untimed steps first (cuBLAS/cuDNN choices, allocator, optimizer state)
    steps: PositiveInt = 10  # timed training steps
    rerank_sizes: tuple[Images, ...] = (10000, 100000)  # images (queries + gallery) per timed re-ranking; empty: none
    rerank_warmup: Images = 2000  # images in the untimed warm-up re-ranking
    query_share: Probability = 0.06  # queries / images (the challenge: 618 / 10,123)
    feature_dim: PositiveInt = 1024  # embedding size (EVA-02-L's)
    method: Literal["k_reciprocal", "hard_weight"] = "k_reciprocal"  # re-ranking timed
    check_numpy: bool = True  # also run the smallest size on the NumPy path and report the largest difference
    peak_tflops: NonNegative = 0.0  # dense bf16 peak for MFU; 0: from the device name (see PEAK_BF16_TFLOPS)


# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), matched in order against the device name.
# The H200 has the H100 SXM's compute. NVL cards are left out (their clocks differ): pass --peak_tflops.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("NVL", None), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))

SMOKE = dict(model="test_vit", img_size=32, batch_size=4, warmup_steps=1, steps=2, rerank_sizes=(200, 500),
             rerank_warmup=100, feature_dim=32)


def peak_tflops(cfg: Config, device: torch.device) -> tuple[float | None, str]:
    """(peak, where it came from): --peak_tflops, else the table by device name; None off CUDA or for unknown cards."""
    if cfg.peak_tflops > 0:
        return cfg.peak_tflops, "--peak_tflops"
    if device.type != "cuda":
        return None, "no bf16 peak for cpu"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return value, f"table: {key}" if value else f"{name}: pass --peak_tflops"
    return None, f"{name} not in the table: pass --peak_tflops"


def peak_memory_gib(device: torch.device, base: int = 0) -> float | None:
    """The most memory allocated on the CUDA device since the last reset, beyond `base` bytes; None on CPU."""
    return (torch.cuda.max_memory_allocated(device) - base) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory measurement (and return cached blocks, so phases do not share them)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def log(message: str) -> None:
    """Progress on stderr: stdout carries the JSON line only."""
    print(message, file=sys.stderr, flush=True)


def train(cfg: Config, device: torch.device) -> dict[str, Any]:
    """Images/s, peak memory and MFU of the engine's training step."""
    reset_peak(device)
    dtype = amp_dtype(cfg.amp, device)
    torch.manual_seed(0)
    encoder, _ = build_encoder(cfg.model, False, img_size=cfg.img_size)
    encoder = encoder.to(device).train()
    log(f"training {cfg.model} @ {cfg.img_size}: {sum(p.numel() for p in encoder.parameters()) / 1e6:.1f} M "
        f"parameters, {cfg.batch_size} pairs per step, amp {dtype}")
    flops = model_flops(encoder, torch.randn(2, 3, cfg.img_size, cfg.img_size, device=device), dtype) * cfg.batch_size
    if cfg.grad_checkpointing:
        encoder.set_grad_checkpointing(True)
    step = engine_step(torch.compile(encoder) if cfg.compile else encoder, cfg.batch_size, cfg.img_size, device,
                       cfg.amp)
    reset_peak(device)
    if cfg.warmup_steps:
        timed(step, cfg.warmup_steps, device)
    seconds = timed(step, cfg.steps, device)
    peak, source = peak_tflops(cfg, device)
    achieved = flops / seconds / 1e12
    return {"images_per_s": 2 * cfg.batch_size / seconds, "step_s": seconds, "peak_memory_gib": peak_memory_gib(device),
            "tflop_per_step": flops / 1e12, "achieved_tflops": achieved, "peak_tflops": peak,
            "peak_tflops_from": source, "mfu": achieved / peak if peak else None}


def train_fitting(cfg: Config, device: torch.device) -> tuple[Config, dict[str, Any]]:
    """(config used, `train` results): when the batch does not fit, once more with gradient checkpointing,
    so that a run on a borrowed GPU still measures something."""
    try:
        return cfg, train(cfg, device)
    except torch.cuda.OutOfMemoryError:
        if cfg.grad_checkpointing:
            raise ReidError(f"out of memory training {cfg.model} with {cfg.batch_size} pairs per step and "
                            "gradient checkpointing: try a smaller --batch_size") from None
    log(f"out of memory with {cfg.batch_size} pairs per step: again with gradient checkpointing")
    return train_fitting(dataclasses.replace(cfg, grad_checkpointing=True), device)


def rerank(cfg: Config, n: int, device: torch.device, check: bool = False) -> dict[str, Any]:
    """Seconds of one re-ranking of n images on `device`, from NumPy features to the NumPy result (the
    features are made beforehand, untimed), and the most device memory it needed beyond what was held before.

    With `check`, the NumPy path re-ranks the same features too (untimed): the largest difference and
    the number of entries that differ by more than 1e-5 (a neighbour decided by rounding) are reported.
    """
    nq = max(1, round(cfg.query_share * n))
    qf, gf, _, _ = features(nq, n - nq, dim=cfg.feature_dim, seed=n)
    reset_peak(device)
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    start = time.perf_counter()
    out = rerank_features(qf, gf, method=cfg.method, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if not math.isfinite(float(out.mean(dtype="float64"))):
        raise ReidError(f"re-ranking of {n} images gave non-finite distances")
    result = {"images": n, "queries": nq, "gallery": n - nq, "seconds": seconds,
              "peak_memory_gib": peak_memory_gib(device, base)}
    if check:
        diff = np.abs(out - rerank_features(qf, gf, method=cfg.method))
        result["vs_numpy"] = {"max_abs_diff": float(diff.max()), "entries_over_1e-5": int((diff > 1e-5).sum())}
    return result


def main(cfg: Config) -> None:
    if cfg.smoke:
        cfg = dataclasses.replace(cfg, **SMOKE)
    device = resolve_device(cfg.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log(f"{name}, torch {torch.__version__}")
    start = time.perf_counter()
    cfg, training = train_fitting(cfg, device)
    mfu = training["mfu"]
    log(f"training: {training['images_per_s']:.1f} images/s, MFU {f'{mfu:.1%}' if mfu else 'n/a'}")
    if cfg.rerank_sizes:
        rerank(cfg, cfg.rerank_warmup, device)
    reranking = []
    for n in cfg.rerank_sizes:
        reranking.append(rerank(cfg, n, device, check=cfg.check_numpy and n == min(cfg.rerank_sizes)))
        log(f"re-ranking {n} images: {reranking[-1]['seconds']:.2f} s")
    dtype = amp_dtype(cfg.amp, device)
    print(json.dumps({"device": name, "torch": torch.__version__, "smoke": cfg.smoke, "model": cfg.model,
                      "img_size": cfg.img_size, "batch_pairs": cfg.batch_size,
                      "autocast": str(dtype).removeprefix("torch.") if dtype else "off",
                      "grad_checkpointing": cfg.grad_checkpointing, "compile": cfg.compile, "timed_steps": cfg.steps,
                      "train": training, "rerank_method": cfg.method, "feature_dim": cfg.feature_dim,
                      "rerank": reranking, "total_s": time.perf_counter() - start}))


if __name__ == "__main__":
    run(main, Config)
