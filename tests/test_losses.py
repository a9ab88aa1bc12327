"""InfoNCE and the ID loss against plain computations."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reid.losses import IDLoss, InfoNCE


def plain_infonce(q, g, scale, smoothing):
    """The symmetric InfoNCE written out row by row."""
    q = q / q.norm(dim=1, keepdim=True)
    g = g / g.norm(dim=1, keepdim=True)
    n = len(q)
    total = 0.0
    for a, b in ((q, g), (g, q)):
        for i in range(n):
            logits = torch.stack([scale * (a[i] * b[j]).sum() for j in range(n)])
            logp = logits - torch.logsumexp(logits, 0)
            target = torch.full((n,), smoothing / n)
            target[i] += 1 - smoothing
            total = total - (target * logp).sum() / n
    return total / 2


def test_infonce_equals_the_plain_computation():
    torch.manual_seed(0)
    q, g = torch.randn(6, 5), torch.randn(6, 5)
    loss = InfoNCE(label_smoothing=0.1)
    assert torch.allclose(loss(q, g), plain_infonce(q, g, 1 / 0.07, 0.1), atol=1e-5)
    assert torch.allclose(InfoNCE(label_smoothing=0.0)(q, g), plain_infonce(q, g, 1 / 0.07, 0.0), atol=1e-5)


def test_logit_scale_starts_at_one_over_007_is_clamped_and_learns():
    loss = InfoNCE()
    assert math.isclose(loss.scale.item(), 1 / 0.07, rel_tol=1e-6)
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(1000.0))
    assert loss.scale.item() == 100.0
    torch.manual_seed(0)
    base = torch.randn(16, 8)
    q, g = base + 0.05 * torch.randn(16, 8), base + 0.05 * torch.randn(16, 8)
    learner = InfoNCE(label_smoothing=0.0)
    opt = torch.optim.SGD(learner.parameters(), lr=0.5)
    before = learner.scale.item()
    for _ in range(20):
        opt.zero_grad()
        learner(q, g).backward()
        opt.step()
    assert learner.scale.item() > before * 1.1, "well separated pairs should sharpen the scale"


def test_id_loss_is_label_smoothed_cross_entropy_over_both_images():
    torch.manual_seed(0)
    q, g, labels = torch.randn(4, 8), torch.randn(4, 8), torch.tensor([0, 2, 1, 2])
    loss = IDLoss(8, 3, label_smoothing=0.1)
    logits = loss.head(torch.cat([q, g]))
    expected = F.cross_entropy(logits, torch.cat([labels, labels]), label_smoothing=0.1)
    assert torch.allclose(loss(q, g, labels), expected)
