"""Training losses: InfoNCE over (query, gallery) pairs, and an ID loss for the ablation.

Under torch.distributed the InfoNCE negatives span the global batch: features are gathered
from every rank, and the gradient that other ranks' loss terms send to this rank's features
comes back through an all-reduce. Each rank's loss covers its own rows, so DDP's average of
the ranks' gradients is exactly the gradient of the loss of one process on the whole batch.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward returns this rank's slice of the summed gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(features of all ranks, offset of this rank's rows); the identity in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    return _GatherWithGrad.apply(x), dist.get_rank() * x.shape[0]


class InfoNCE(nn.Module):
    """Symmetric InfoNCE with a learnable temperature, as in CLIP.

    logits = scale * q̂·ĝᵀ with L2-normalised features; cross-entropy query→gallery and
    gallery→query, averaged. The scale starts at 1/0.07 and is clamped at 100.
    """

    def __init__(self, label_smoothing: float = 0.1, init_scale: float = 1 / 0.07,
                 max_scale: float = 100.0):
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

    def __init__(self, feature_dim: int, num_classes: int, label_smoothing: float = 0.1):
        super().__init__()
        self.head = nn.Linear(feature_dim, num_classes)
        self.label_smoothing = label_smoothing

    def forward(self, q: torch.Tensor, g: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.head(torch.cat([q, g]).float())
        return F.cross_entropy(logits, torch.cat([labels, labels]), label_smoothing=self.label_smoothing)
