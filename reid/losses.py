"""Training losses: InfoNCE over (query, gallery) pairs, and an ID loss for the ablation.

Under torch.distributed the InfoNCE negatives span the global batch: features are gathered
from every rank by torch.distributed.nn's all_gather, whose backward sends this rank's features
the gradient that every rank's loss terms give them. Each rank's loss covers its own rows, so DDP's average of
the ranks' gradients is exactly the gradient of the loss of one process on the whole batch.
"""

from __future__ import annotations

import math
import warnings
from typing import Annotated

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.nn.functional import all_gather

from reid.rules import Positive, PositiveInt, Range, checked

Smoothing = Annotated[float, Range(lo=0, hi=1, hi_open=True)]  # cross-entropy label smoothing


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(features of all ranks, offset of this rank's rows); the identity in one process.

    torch.distributed.nn's all_gather carries the gradient back: each rank receives the sum over
    ranks of the gradient of its own rows. torch 2.14 deprecates it for a function of the private
    `_functional_collectives`, which the oldest torch supported here (2.4) lacks: its warning, on
    every rank of every run, would ask users for a change they cannot make.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_gather is deprecated",
                                FutureWarning)
        parts = all_gather(x)
    return torch.cat(parts), dist.get_rank() * x.shape[0]


class InfoNCE(nn.Module):
    """Symmetric InfoNCE with a learnable temperature, as in CLIP.

    logits = scale * q̂·ĝᵀ with L2-normalised features; cross-entropy query→gallery and
    gallery→query, averaged. The scale starts at 1/0.07 and is clamped at 100.
    """

    @checked
    def __init__(self, label_smoothing: Smoothing = 0.1, init_scale: Positive = 1 / 0.07,
                 max_scale: Positive = 100.0):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.max_scale = max_scale
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    @property
    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.max_scale)

    def forward(self, q: torch.Tensor, g: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        q, g = F.normalize(q.float(), dim=-1), F.normalize(g.float(), dim=-1)
        all_q, offset = gather_with_grad(q)
        all_g, _ = gather_with_grad(g)
        target = torch.arange(q.shape[0], device=q.device) + offset
        scale = self.scale
        q_to_g = F.cross_entropy(scale * q @ all_g.T, target, label_smoothing=self.label_smoothing)
        g_to_q = F.cross_entropy(scale * g @ all_q.T, target, label_smoothing=self.label_smoothing)
        return (q_to_g + g_to_q) / 2


class IDLoss(nn.Module):
    """Classification of both images of a pair over the training players (label-smoothed)."""

    @checked
    def __init__(self, feature_dim: PositiveInt, num_classes: PositiveInt, label_smoothing: Smoothing = 0.1):
        super().__init__()
        self.head = nn.Linear(feature_dim, num_classes)
        self.label_smoothing = label_smoothing

    def forward(self, q: torch.Tensor, g: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.head(torch.cat([q, g]).float())
        return F.cross_entropy(logits, torch.cat([labels, labels]), label_smoothing=self.label_smoothing)
