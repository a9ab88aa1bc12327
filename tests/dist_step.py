"""Run by test_train.py under torchrun: gathered InfoNCE gradients across ranks.

Each rank takes its slice of one global batch; the summed gradient of the encoder must equal
the gradient one process computes on the whole batch. Rank 0 saves what it saw. With a second
argument `bf16`, the encoder runs under CPU bfloat16 autocast, so bf16 features are what the
loss gathers over gloo.
"""

import contextlib
import sys

import torch
import torch.distributed as dist

from reid.losses import InfoNCE

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
encoder = torch.nn.Linear(6, 4)
loss_fn = InfoNCE()
q, g = torch.randn(8, 6), torch.randn(8, 6)
rows = slice(rank * 8 // world, (rank + 1) * 8 // world)
bf16 = sys.argv[2:] == ["bf16"]
with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
    fq, fg = encoder(q[rows]), encoder(g[rows])
assert (fq.dtype == torch.bfloat16) == bf16
loss = loss_fn(fq, fg)
loss.backward()
for p in list(encoder.parameters()) + [loss_fn.logit_scale]:
    dist.all_reduce(p.grad)
    p.grad /= world
if rank == 0:
    torch.save({"weight": encoder.weight.grad, "bias": encoder.bias.grad,
                "scale": loss_fn.logit_scale.grad}, sys.argv[1])
dist.destroy_process_group()
