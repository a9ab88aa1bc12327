"""The engine's optimizer and schedule, built by timm's factories: what decays, and the LR per update."""

from __future__ import annotations

import pytest
import torch

from reid.engine import Siamese, TrainConfig, build_optimizer, build_scheduler
from reid.losses import InfoNCE
from reid.models import build_encoder


def names_by_group(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[set[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [{names[id(p)] for p in group["params"]} for group in optimizer.param_groups]


def test_weight_decay_spares_the_temperature_biases_norms_and_position_embeddings():
    model = Siamese(build_encoder("test_vit", pretrained=False, img_size=32)[0], InfoNCE())
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3, weight_decay=0.05))
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 0.05]
    assert {g["lr"] for g in optimizer.param_groups} == {1e-3}
    spared, decayed = names_by_group(model, optimizer)
    assert {"criterion.logit_scale", "encoder.pos_embed", "encoder.cls_token", "encoder.norm.weight",
            "encoder.patch_embed.proj.bias"} <= spared
    assert "encoder.patch_embed.proj.weight" in decayed
    assert all(p.ndim >= 2 for n, p in model.named_parameters() if n in decayed)
    assert spared | decayed == {n for n, _ in model.named_parameters()}


def reference_lr(t: int, cfg: TrainConfig, updates: int) -> float:
    """The schedule as README states it: linear warm-up from 0 over whole updates, then
    polynomial decay to lr_end at the last update."""
    total = cfg.epochs * updates
    warmup = min(round(cfg.warmup_epochs * updates), total - 1)
    if t < warmup:
        return cfg.lr * t / warmup
    if t >= total:
        return cfg.lr_end
    return cfg.lr_end + (cfg.lr - cfg.lr_end) * (1 - (t - warmup) / (total - warmup)) ** cfg.poly_power


@pytest.mark.parametrize("epochs, updates, warmup_epochs, power", [
    (8, 26, 1.0, 1.0), (5, 26, 0.7, 2.0), (3, 7, 0.5, 0.5), (1, 1, 1.0, 1.0), (2, 3, 0.0, 1.0), (4, 9, 5.0, 1.0),
])
def test_the_lr_of_every_update_follows_the_definition(epochs, updates, warmup_epochs, power):
    cfg = TrainConfig(lr=4e-4, lr_end=1e-5, epochs=epochs, warmup_epochs=warmup_epochs, poly_power=power)
    optimizer = build_optimizer(torch.nn.Linear(2, 2), cfg)
    scheduler = build_scheduler(optimizer, cfg, updates)
    lrs = [optimizer.param_groups[0]["lr"]]
    for t in range(1, epochs * updates + 3):  # past the end: the schedule holds lr_end
        scheduler.step_update(t)
        assert len({g["lr"] for g in optimizer.param_groups}) == 1
        lrs.append(optimizer.param_groups[0]["lr"])
    want = [reference_lr(t, cfg, updates) for t in range(len(lrs))]
    assert lrs == pytest.approx(want, rel=1e-12, abs=1e-18)


def test_a_restored_schedule_goes_on_as_the_uninterrupted_one():
    cfg = TrainConfig(lr=1e-3, epochs=3, warmup_epochs=0.5)
    straight_opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    straight = build_scheduler(straight_opt, cfg, 10)
    for t in range(1, 13):
        straight.step_update(t)
    restored_opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    restored = build_scheduler(restored_opt, cfg, 10)
    restored.load_state_dict(straight.state_dict())
    for t in range(13, 31):
        straight.step_update(t)
        restored.step_update(t)
        assert restored_opt.param_groups[0]["lr"] == straight_opt.param_groups[0]["lr"]
