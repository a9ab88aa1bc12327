"""Images per second of the engine's training step against a bare timm loop, in one run.

    python -m bench.train_throughput                      # CPU: efficientnet_lite0, offline
    python -m bench.train_throughput --device=cuda --model=eva02_large_patch14_448.mim_m38m_ft_in22k_in1k \
        --img_size=448 --batch_size=32 --pretrained=false [--grad_checkpointing=true]

The engine's step (reid.engine.train_step: the Siamese forward over both images, InfoNCE, the
finite-loss check, AdamW) and the reference (the same model: forward, a trivial loss, backward,
AdamW) alternate in rounds on the same in-memory batch; the median of each is compared.
On CUDA it also prints peak memory and model FLOPs utilisation (FLOPs counted by
torch.utils.flop_counter for one forward and backward).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch.utils.flop_counter import FlopCounterMode

from reid.config import run
from reid.engine import RankContext, Siamese, TrainConfig, amp_dtype, train_step
from reid.features import autocast
from reid.losses import InfoNCE
from reid.models import build_encoder


@dataclass
class Config:
    model: str = "efficientnet_lite0"  # timm name (efficientnet_lite0 has offline weights)
    pretrained: str = "true"  # true, false, or a weights file
    img_size: int = 160  # square input side
    batch_size: int = 8  # pairs per step (2 x batch_size images)
    device: Literal["cpu", "cuda"] = "cpu"  # where to run
    amp: Literal["bf16", "fp16", "off"] = "bf16"  # CUDA only
    grad_checkpointing: bool = False  # recompute activations in backward
    rounds: int = 5  # alternating rounds of engine and reference
    steps: int = 3  # timed steps per round and side
    peak_tflops: float = 989.0  # dense bf16 peak of the GPU for MFU (H100 SXM: 989)


def timed(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds per step."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main(cfg: Config) -> None:
    device = torch.device(cfg.device)
    train_cfg = TrainConfig(amp=cfg.amp, batch_size=cfg.batch_size)
    dtype = amp_dtype(cfg.amp, device)
    torch.manual_seed(0)
    encoder, _ = build_encoder(cfg.model, cfg.pretrained, img_size=cfg.img_size,
                               grad_checkpointing=cfg.grad_checkpointing)
    reference, _ = build_encoder(cfg.model, cfg.pretrained, img_size=cfg.img_size,
                                 grad_checkpointing=cfg.grad_checkpointing)
    engine = Siamese(encoder, InfoNCE()).to(device).train()
    reference = reference.to(device).train()
    if device.type == "cuda":
        engine, reference = (m.to(memory_format=torch.channels_last) for m in (engine, reference))
    q, g = (torch.randn(cfg.batch_size, 3, cfg.img_size, cfg.img_size, device=device) for _ in range(2))
    labels = torch.arange(cfg.batch_size, device=device)
    batch = torch.cat([q, g])

    engine_opt = torch.optim.AdamW(engine.parameters(), lr=1e-5)
    reference_opt = torch.optim.AdamW(reference.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    ctx = RankContext(0, 1, device)

    def engine_step() -> None:
        train_step(engine, [(q, g, labels)], engine_opt, scaler, train_cfg, ctx, dtype, "benchmark")

    def reference_step() -> None:
        with autocast(device, dtype):
            loss = reference(batch).float().square().mean()
        scaler.scale(loss).backward()
        scaler.step(reference_opt)
        scaler.update()
        reference_opt.zero_grad(set_to_none=True)

    for step in (engine_step, reference_step):
        timed(step, 2, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    engine_times, reference_times = [], []
    for _ in range(cfg.rounds):
        engine_times.append(timed(engine_step, cfg.steps, device))
        reference_times.append(timed(reference_step, cfg.steps, device))
    images = 2 * cfg.batch_size
    engine_ips = images / statistics.median(engine_times)
    reference_ips = images / statistics.median(reference_times)
    print(f"model {cfg.model}  img {cfg.img_size}  batch {cfg.batch_size} pairs  device {cfg.device}"
          f"  amp {dtype}  grad_checkpointing {cfg.grad_checkpointing}")
    print(f"engine     {engine_ips:9.2f} images/s")
    print(f"bare timm  {reference_ips:9.2f} images/s")
    print(f"ratio engine/bare = {engine_ips / reference_ips:.3f} (target >= 0.90)")
    if device.type == "cuda":
        with FlopCounterMode(display=False) as counter:
            reference_step()
        flops = counter.get_total_flops()
        peak = torch.cuda.max_memory_allocated() / 2**30
        mfu = flops / (images / engine_ips) / (cfg.peak_tflops * 1e12)
        print(f"peak memory {peak:.1f} GiB  model FLOPs/step {flops / 1e12:.2f} T  MFU {100 * mfu:.1f}%")


if __name__ == "__main__":
    run(main, Config)
