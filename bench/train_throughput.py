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
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from reid.config import run
from reid.device import Amp, amp_dtype, autocast
from reid.engine import RankContext, Siamese, TrainConfig, build_optimizer, train_step
from reid.losses import InfoNCE
from reid.models import Pretrained, build_encoder
from reid.rules import Checked, Positive, PositiveInt


@dataclass
class Config(Checked):
    model: str = "efficientnet_lite0"  # timm name (efficientnet_lite0 has offline weights)
    pretrained: Pretrained = True  # true, false, or a weights file
    img_size: PositiveInt = 160  # square input side
    batch_size: PositiveInt = 8  # pairs per step (2 x batch_size images)
    device: Literal["cpu", "cuda"] = "cpu"  # where to run
    amp: Amp = "bf16"  # CUDA only
    grad_checkpointing: bool = False  # recompute activations in backward
    rounds: PositiveInt = 5  # alternating rounds of engine and reference
    steps: PositiveInt = 3  # timed steps per round and side
    peak_tflops: Positive = 989.0  # dense bf16 peak of the GPU for MFU (H100 SXM: 989)


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


def engine_step(encoder: nn.Module, batch_size: int, img_size: int, device: torch.device,
                amp: str) -> Callable[[], None]:
    """One reid.engine.train_step of `encoder` on a fixed random batch of `batch_size` pairs.

    The engine's real step: the Siamese forward over both images, InfoNCE, the finite-loss
    check, the engine's AdamW; channels-last on CUDA, as the engine trains.
    """
    dtype = amp_dtype(amp, device)
    net = Siamese(encoder, InfoNCE()).to(device).train()
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    q, g = (torch.randn(batch_size, 3, img_size, img_size, device=device) for _ in range(2))
    labels = torch.arange(batch_size, device=device)
    train_cfg, ctx = TrainConfig(amp=amp, batch_size=batch_size, lr=1e-5), RankContext(0, 1, device)
    optimizer = build_optimizer(net, train_cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    def step() -> None:
        train_step(net, [(q, g, labels)], optimizer, scaler, train_cfg, ctx, dtype, "benchmark")

    return step


def model_flops(model: nn.Module, images: torch.Tensor, dtype: torch.dtype | None) -> int:
    """FLOPs of one forward and backward of `model` on `images` (torch.utils.flop_counter:
    matrix products, convolutions, attention); the gradients are dropped afterwards."""
    with FlopCounterMode(display=False) as counter:
        with autocast(images.device, dtype):
            loss = model(images).float().square().mean()
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main(cfg: Config) -> None:
    device = torch.device(cfg.device)
    dtype = amp_dtype(cfg.amp, device)
    torch.manual_seed(0)
    encoder, _ = build_encoder(cfg.model, cfg.pretrained, img_size=cfg.img_size,
                               grad_checkpointing=cfg.grad_checkpointing)
    reference, _ = build_encoder(cfg.model, cfg.pretrained, img_size=cfg.img_size,
                                 grad_checkpointing=cfg.grad_checkpointing)
    engine = engine_step(encoder, cfg.batch_size, cfg.img_size, device, cfg.amp)
    reference = reference.to(device).train()
    if device.type == "cuda":
        reference = reference.to(memory_format=torch.channels_last)
    batch = torch.randn(2 * cfg.batch_size, 3, cfg.img_size, cfg.img_size, device=device)
    reference_opt = torch.optim.AdamW(reference.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    def reference_step() -> None:
        with autocast(device, dtype):
            loss = reference(batch).float().square().mean()
        scaler.scale(loss).backward()
        scaler.step(reference_opt)
        scaler.update()
        reference_opt.zero_grad(set_to_none=True)

    for step in (engine, reference_step):
        timed(step, 2, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    engine_times, reference_times = [], []
    for _ in range(cfg.rounds):
        engine_times.append(timed(engine, cfg.steps, device))
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
        peak = torch.cuda.max_memory_allocated() / 2**30
        flops = model_flops(reference, batch, dtype)
        mfu = flops / (images / engine_ips) / (cfg.peak_tflops * 1e12)
        print(f"peak memory {peak:.1f} GiB  model FLOPs/step {flops / 1e12:.2f} T  MFU {100 * mfu:.1f}%")


if __name__ == "__main__":
    run(main, Config)
