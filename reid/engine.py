"""The training loop both train scripts share: DDP, AMP, schedule, evaluation, checkpoints.

One process per device, launched by torchrun (or plain python for one process). Every rank
builds the same model from the same seed and walks its slice of the same global batches;
only rank 0 evaluates, prints and writes. `last.pt` holds all that an exact resume needs.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from reid.config import format_config, save_config, to_dict
from reid.data import (
    Fold,
    PairDataset,
    UniquePlayerBatchSampler,
    identities,
    image_paths,
    load_partition,
    split_fold,
)
from reid.device import Amp, RankContext, amp_dtype, amp_note, autocast, distributed
from reid.distance import sq_euclidean
from reid.embedder import Embedder
from reid.errors import ReidError
from reid.files import require_writable, write_with
from reid.images import require_images
from reid.io import write_csv
from reid.loader import make_loader
from reid.losses import IDLoss, InfoNCE, Smoothing
from reid.metrics import evaluate
from reid.models import Pretrained, build_encoder, load_checkpoint
from reid.rerank import distance_matrices
from reid.rules import Checked, Count, Folder, NonNegative, Positive, PositiveInt, Probability, checked
from reid.runs import (
    COMPLETE,
    CONFIG,
    LAST,
    RESUMABLE,
    data_fingerprint,
    early_end,
    hold_run,
    recipe_changes,
    require_checkpoint,
    schedule_epochs,
    write_complete,
)
from reid.transforms import train_transform
from reid.visualize import training_curves

# What a script or a benchmark calls; the rest is the loop's own machinery.
__all__ = ["TrainConfig", "Siamese", "fit", "train_step", "build_optimizer", "build_scheduler"]


@dataclass
class TrainConfig(Checked):
    """Every training hyperparameter; the scripts restate the recipe's headline values."""

    data_dir: Path = Path("data")  # dataset root: <data_dir>/data_reid/ with train_df.csv
    checkpoint_dir: Path = Path("checkpoints")  # runs are written to <checkpoint_dir>/<run_name>/
    run_name: Folder = "run"  # name of the run folder
    model: str = "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k"  # timm name, or open_clip:<arch>:<tag>
    pretrained: Pretrained = True  # true (hub; offline package for efficientnet_lite0), false, or a weights file
    img_size: PositiveInt = 448  # square input side: resize keeping the aspect ratio, then pad
    epochs: PositiveInt = 8  # passes over the training images
    batch_size: PositiveInt = 32  # pairs per process; InfoNCE negatives span all processes
    lr: Positive = 4e-5  # peak learning rate (AdamW)
    lr_end: NonNegative = 1e-5  # learning rate at the end of the polynomial decay
    warmup_epochs: NonNegative = 1.0  # linear warm-up from 0, in epochs
    poly_power: Positive = 1.0  # power of the polynomial decay (1 = linear)
    weight_decay: NonNegative = 0.01  # AdamW's default
    accum_steps: PositiveInt = 1  # micro-batches per optimiser step (each its own contrastive batch)
    clip_grad: NonNegative = 0.0  # max gradient norm; 0 turns clipping off
    loss: Literal["infonce", "id"] = "infonce"  # InfoNCE on pairs, or ID loss (ablation)
    label_smoothing: Smoothing = 0.1  # for both losses
    sharpen: bool = True  # albumentations Sharpen (library defaults, p=0.5)
    random_erasing: Probability = 0.5  # probability of random erasing (scale 0.02-0.33, value 0)
    flip_p: Probability = 0.5  # probability of flipping a pair (both images together)
    fold: Fold = -1  # -1: train on split train, validate on split test; k: validate on fold k
    seed: Count = 1  # model init, batch order and augmentation
    amp: Amp = "bf16"  # mixed precision on CUDA; CPU runs fp32
    grad_checkpointing: bool = False  # trade compute for memory on large backbones
    num_workers: Count = 4  # data loader processes per rank
    device: Literal["auto", "cuda", "cpu"] = "auto"  # auto: CUDA when available
    resume: bool = False  # continue the run from its last.pt
    max_steps_per_epoch: Count = 0  # 0: all; a small number for smoke runs
    eval_batch_size: PositiveInt = 64  # images per batch when extracting validation features
    rerank_eval: bool = True  # also report mAP after k-reciprocal and hard-weight re-ranking


class Siamese(nn.Module):
    """One encoder for both images of a pair, and the loss on their features."""

    def __init__(self, encoder: nn.Module, criterion: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.criterion = criterion

    def forward(self, q: torch.Tensor, g: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        fq, fg = self.encoder(torch.cat([q, g])).chunk(2)
        return self.criterion(fq, fg, labels)

    def no_weight_decay(self) -> set[str]:
        """What the backbone declares undecayed (timm's convention), under this module's names,
        for `create_optimizer_v2`."""
        return {f"encoder.{name}" for name in getattr(self.encoder, "no_weight_decay", set)()}


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save through reid.files: a crash or a full disk never leaves half a checkpoint, nor
    the temporary file."""
    try:
        write_with(path, lambda tmp: torch.save(obj, tmp))
    except RuntimeError as exc:  # torch's zip writer reports a full disk as a RuntimeError
        raise ReidError(f"cannot write {path} (disk full?): {str(exc).splitlines()[0]}") from None


def check_resumable(ckpt: dict, cfg: TrainConfig, data: str, path: Path) -> None:
    """Refuse to resume with a different recipe or other data, naming what changed, or with
    epochs that would end the run early; where the run folder or the dataset now lives does
    not matter."""
    changed = recipe_changes(ckpt["config"], to_dict(cfg), RESUMABLE)
    if changed:
        raise ReidError(f"{path} was trained with other settings; pass the same values to resume: "
                        + "; ".join(changed))
    if ckpt.get("data") != data:
        raise ReidError(f"{path} was trained on other data (the images or the partition under "
                        f"{cfg.data_dir} changed since); train a new run instead")
    if problem := early_end(ckpt["epoch"], schedule_epochs(ckpt), cfg.epochs):
        raise ReidError(f"{path}: {problem}")


def resume_checkpoint(cfg: TrainConfig, run_dir: Path, data: str) -> dict | None:
    """The last.pt that a --resume=true run continues, checked against this request; None for
    a new run, which must not overwrite one."""
    last = run_dir / LAST
    if not cfg.resume:
        if last.exists():
            raise ReidError(f"{run_dir} already holds a run: pass --resume=true or another --run_name")
        return None
    ckpt = load_checkpoint(last)
    check_resumable(ckpt, cfg, data, last)
    return ckpt


def rank_seed(seed: int, rank: int) -> int:
    """A seed of its own for each rank, so ranks draw different dropout and augmentation."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def rng_states(ctx: RankContext) -> list[dict]:
    """Every rank's random state (gathered on all ranks), for an exact resume of each."""
    mine = {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(ctx.device) if ctx.device.type == "cuda" else None}
    if ctx.world_size == 1:
        return [mine]
    states: list[dict] = [{} for _ in range(ctx.world_size)]
    dist.all_gather_object(states, mine)
    return states


def restore_rng(states: list[dict], ctx: RankContext) -> None:
    """Put back this rank's random state from `rng_states` of the interrupted run."""
    if len(states) != ctx.world_size:
        raise ReidError(f"the run was trained on {len(states)} processes; resume it on as many "
                        f"(now {ctx.world_size})")
    torch.set_rng_state(states[ctx.rank]["torch"])
    if ctx.device.type == "cuda":
        torch.cuda.set_rng_state(states[ctx.rank]["cuda"], ctx.device)


def validation_metrics(embedder: Embedder, paths: list[Path], ids: np.ndarray, is_query: np.ndarray,
                       batch_size: int, rerank: bool, cameras: np.ndarray | None = None) -> dict[str, float]:
    """mAP and CMC on the validation split, plain and (optionally) after both re-rankings;
    camera-aware where the partition has cameras."""
    feats = embedder.embed(paths, batch_size=batch_size, progress=True, desc="validation")
    qf, gf = feats[is_query], feats[~is_query]
    if rerank:
        mats = distance_matrices(qf, gf)
        methods = {"": mats["dist"], "_kr": mats["dist_kr"], "_hw": mats["dist_hw"]}
    else:
        methods = {"": sq_euclidean(qf, gf)}
    cams = (None, None) if cameras is None else (cameras[is_query], cameras[~is_query])
    out = {}
    for suffix, distmat in methods.items():
        scores = evaluate(distmat, ids[is_query], ids[~is_query], *cams)
        out |= {f"mAP{suffix}": scores["mAP"], f"rank1{suffix}": scores["rank1"],
                f"rank5{suffix}": scores["rank5"]}
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW from timm's factory, which decays only the weight matrices: InfoNCE's temperature,
    biases, norms and what the backbone declares in `no_weight_decay` (position embeddings,
    class tokens) train undecayed, as timm and open_clip train them."""
    return create_optimizer_v2(model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)


@checked
def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, updates_per_epoch: PositiveInt) -> Scheduler:
    """timm's poly schedule, stepped per update: a linear warm-up from 0 to `lr` over whole
    updates (leaving at least one to decay), then polynomial decay that reaches `lr_end` at the
    last update of epoch `epochs`."""
    warmup = min(round(cfg.warmup_epochs * updates_per_epoch), cfg.epochs * updates_per_epoch - 1)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched="poly", num_epochs=cfg.epochs - warmup / updates_per_epoch,
        warmup_epochs=warmup / updates_per_epoch, warmup_prefix=True, warmup_lr=0.0, min_lr=cfg.lr_end,
        decay_rate=cfg.poly_power, step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    return scheduler


PEER_LOST = ("closed by peer", "reset by peer", "Broken pipe")  # how gloo reports a rank that exited


def peer_lost(exc: BaseException) -> bool:
    """Whether a collective failed because another rank stopped (its own error says why)."""
    return isinstance(exc, dist.DistError) or any(text in str(exc) for text in PEER_LOST)


def fit(cfg: TrainConfig) -> Path:
    """Train as `cfg` says; returns the run folder.

    When one rank fails (an unreadable image, a full disk), it names the fault and exits; the
    others' next collective fails at once, and each says in one line that it stopped for that
    reason. torchrun then ends the job: no rank waits for a peer that is gone.
    """
    run_dir = Path(cfg.checkpoint_dir) / cfg.run_name
    if cfg.resume:
        require_checkpoint(run_dir)  # before hold_run makes the folder
    require_writable(cfg.checkpoint_dir, "checkpoint_dir")
    with distributed(cfg.device) as ctx:
        try:
            with hold_run(run_dir) if ctx.main else contextlib.nullcontext():
                return _fit(cfg, ctx)
        except RuntimeError as exc:
            if ctx.world_size > 1 and peer_lost(exc):
                raise ReidError(f"rank {ctx.rank} stopped: another process of this run failed (its error is "
                                "above or in torchrun's summary)") from None
            raise


def _fit(cfg: TrainConfig, ctx: RankContext) -> Path:
    run_dir = Path(cfg.checkpoint_dir) / cfg.run_name
    ctx.say(format_config(cfg))
    root = Path(cfg.data_dir) / "data_reid"
    train_df, val_df = split_fold(load_partition(root / "train_df.csv"), cfg.fold)
    data = data_fingerprint(root)
    ckpt = resume_checkpoint(cfg, run_dir, data)
    require_images(image_paths(root, pd.concat([train_df, val_df])), f"{root / 'train_df.csv'}")

    torch.manual_seed(cfg.seed)
    encoder, data_cfg = build_encoder(cfg.model, cfg.pretrained, img_size=cfg.img_size,
                                      grad_checkpointing=cfg.grad_checkpointing)
    train_set = PairDataset(root, train_df, train_transform(data_cfg.img_size, data_cfg.mean, data_cfg.std, cfg.sharpen,
                                                            cfg.random_erasing, data_cfg.interpolation),
                            cfg.flip_p)
    criterion = (InfoNCE(cfg.label_smoothing) if cfg.loss == "infonce"
                 else IDLoss(encoder.num_features, train_set.num_classes, cfg.label_smoothing))
    model = Siamese(encoder, criterion).to(ctx.device)
    if ctx.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    net = DistributedDataParallel(model) if ctx.world_size > 1 else model

    sampler = UniquePlayerBatchSampler(train_set.labels, cfg.batch_size, seed=cfg.seed,
                                       world_size=ctx.world_size, rank=ctx.rank)
    pin = ctx.device.type == "cuda"
    train_loader = make_loader(train_set, batch_sampler=sampler, num_workers=cfg.num_workers, pin_memory=pin)
    validator = Embedder(encoder, data_cfg, ctx.device, amp=cfg.amp, workers=cfg.num_workers)
    val_paths, val_ids = image_paths(root, val_df), identities(val_df)
    val_is_query = (val_df["img_type"] == "q").to_numpy()

    micro_batches = len(sampler)
    updates = micro_batches // cfg.accum_steps
    if cfg.max_steps_per_epoch:
        updates = min(updates, cfg.max_steps_per_epoch)
    if updates == 0:
        raise ReidError(f"an epoch has {micro_batches} batches of {cfg.batch_size} x {ctx.world_size}: "
                        f"fewer than accum_steps={cfg.accum_steps}; lower batch_size or accum_steps")
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, updates)
    dtype = amp_dtype(cfg.amp, ctx.device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    state = {"epoch": 0, "best_map": -1.0, "history": [], "schedule_epochs": cfg.epochs}
    torch.manual_seed(rank_seed(cfg.seed, ctx.rank))
    if ckpt is not None:
        model.encoder.load_state_dict(ckpt["model"])
        model.criterion.load_state_dict(ckpt["criterion"])
        if len(ckpt["optimizer"]["param_groups"]) != len(optimizer.param_groups):
            raise ReidError(f"{run_dir / LAST} holds the optimizer state of an earlier version (one weight "
                            "decay for all parameters), which cannot resume exactly; train a new run")
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        restore_rng(ckpt["rng"], ctx)
        state = {k: ckpt[k] for k in ("epoch", "best_map", "history")} | {"schedule_epochs": schedule_epochs(ckpt)}
        ctx.say(f"resuming {run_dir} after epoch {state['epoch']}"
                + (f"; its {state['schedule_epochs']}-epoch schedule goes on at lr_end to epoch {cfg.epochs}"
                   if cfg.epochs > state["schedule_epochs"] else ""))
    if ctx.main:
        (run_dir / COMPLETE).unlink(missing_ok=True)
        save_config(cfg, run_dir / CONFIG)
    if note := amp_note(cfg.amp, ctx.device):
        ctx.say(note)
    ctx.say(f"{len(train_set)} training images, {train_set.num_classes} players; "
        f"{updates} steps per epoch on {ctx.world_size} x {ctx.device.type}; run folder {run_dir}")

    for epoch in range(state["epoch"], cfg.epochs):
        started = time.time()
        sampler.set_epoch(epoch)
        mean_loss = train_epoch(net, train_loader, optimizer, scheduler, scaler, cfg, ctx, dtype, epoch, updates)
        row = {}
        if ctx.main:
            row = {"epoch": epoch + 1, "loss": mean_loss, "lr": optimizer.param_groups[0]["lr"]}
            row |= validation_metrics(validator, val_paths, val_ids, val_is_query, cfg.eval_batch_size,
                                      cfg.rerank_eval, val_df["camera"].to_numpy() if "camera" in val_df else None)
            row["seconds"] = round(time.time() - started, 1)
        rngs = rng_states(ctx)  # after validation, which draws from the generator too
        state["epoch"] = epoch + 1
        if ctx.main:
            state["history"].append(row)
            weights = {"model": model.encoder.state_dict(), "config": to_dict(cfg), "data": data,
                       "data_config": data_cfg.to_dict(), "epoch": epoch + 1, "metrics": row}
            improved = row["mAP"] > state["best_map"]
            state["best_map"] = max(row["mAP"], state["best_map"])
            # last.pt first: a failure in between leaves a resumable run, never a best.pt alone
            save_atomic(weights | state | {"criterion": model.criterion.state_dict(),
                                           "optimizer": optimizer.state_dict(),
                                           "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                                           "rng": rngs}, run_dir / LAST)
            if improved:
                save_atomic(weights, run_dir / "best.pt")
            # rewritten from the checkpointed history, so a resume never duplicates a row
            history = pd.DataFrame(state["history"])
            write_csv(history, run_dir / "metrics.csv")
            training_curves(history, run_dir / "curves.png", title=cfg.run_name)
            ctx.say("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        if ctx.world_size > 1:
            dist.barrier()
    if ctx.main:
        write_complete(run_dir, to_dict(cfg), data, state["best_map"], state["schedule_epochs"])
    ctx.say(f"done: best mAP {state['best_map']:.4f}; {run_dir / 'best.pt'}")
    return run_dir


def train_epoch(net: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                scheduler: Scheduler, scaler: torch.amp.GradScaler, cfg: TrainConfig,
                ctx: RankContext, dtype: torch.dtype | None, epoch: int, updates: int) -> float:
    """`updates` optimiser steps; returns the mean loss over all ranks."""
    net.train()
    total, done = 0.0, epoch * updates
    bar = tqdm(range(updates), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not ctx.main, leave=False)
    with contextlib.closing(iter(loader)) as batches:  # closed, not collected: see make_loader
        for step in bar:
            where = f"epoch {epoch + 1}, step {step + 1} (update {done + step + 1})"
            micro_batches = [next(batches) for _ in range(cfg.accum_steps)]
            value = train_step(net, micro_batches, optimizer, scaler, cfg, ctx, dtype, where)
            scheduler.step_update(done + step + 1)
            total += value
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    return total / updates


def train_step(net: nn.Module, micro_batches: list, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, cfg: TrainConfig, ctx: RankContext,
               dtype: torch.dtype | None, where: str) -> float:
    """One optimiser step over `micro_batches` of (query, gallery, label); returns the loss.

    The loss is averaged over ranks once per step, after the backward passes: a NaN or inf
    loss raises before any gradient is applied, on every rank at once.
    """
    total = torch.zeros((), device=ctx.device)
    for i, batch in enumerate(micro_batches):
        q, g, labels = (t.to(ctx.device, non_blocking=True) for t in batch)
        last = i == len(micro_batches) - 1
        sync = net.no_sync() if isinstance(net, DistributedDataParallel) and not last else contextlib.nullcontext()
        with sync:
            with autocast(ctx.device, dtype):
                loss = net(q, g, labels) / len(micro_batches)
            scaler.scale(loss).backward()
        total += loss.detach().float()
    value = global_mean(total, ctx)
    if not math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        raise ReidError(f"loss is {value} at {where}; stopped before the update. The last good "
                        f"checkpoint is {Path(cfg.checkpoint_dir) / cfg.run_name / LAST}")
    if cfg.clip_grad > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return value


def global_mean(x: torch.Tensor, ctx: RankContext) -> float:
    """The mean of a scalar over ranks: every rank sees the same value, so all stop together."""
    if ctx.world_size > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= ctx.world_size
    return float(x)
