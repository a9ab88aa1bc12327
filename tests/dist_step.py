"""Run by test_train.py under torchrun: gathered InfoNCE gradients across ranks.

Each rank takes its slice of one global batch; the summed gradient of the encoder must equal
the gradient one process computes on the whole batch. Rank 0 saves what it saw.
"""

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
loss = loss_fn(encoder(q[rows]), encoder(g[rows]))
loss.backward()
for p in list(encoder.parameters()) + [loss_fn.logit_scale]:
    dist.all_reduce(p.grad)
    p.grad /= world
if rank == 0:
    torch.save({"weight": encoder.weight.grad, "bias": encoder.bias.grad,
                "scale": loss_fn.logit_scale.grad}, sys.argv[1])
dist.destroy_process_group()
