"""The recipe's three backbones, sized without memory or downloads: parameters, feature size,
forward FLOPs, and the training memory per GPU, with and without gradient checkpointing.

    python -m bench.recipe_models                      # a text table
    python -m bench.recipe_models --format=markdown    # the same table for the README

Each model is built through reid.models.build_encoder on the meta device (shapes only: no
memory, no weights, no network). FLOPs: torch.utils.flop_counter over a forward of one meta
image, a multiply-add counted as 2 FLOPs (timm's tables list GMACs, half these numbers).

Training memory per GPU, for `pairs` pairs (2 x pairs images in one forward, as the engine's
Siamese runs them) under bf16 autocast with AdamW:
- 16 bytes per parameter: fp32 weights (4), fp32 gradients (4), AdamW's two fp32 moments (8).
- activations, measured, not guessed: the tensors autograd saves for backward, each storage
  counted once (parameters excluded), caught by torch.autograd.graph.saved_tensors_hooks in a
  CPU forward under bf16 autocast of the same timm architecture cut to 1 and 2 blocks, on 1 and
  2 images at the real image side. The four counts give the bytes per block per image, per block
  (autocast's bf16 copies of its weights, shared by the batch), and per image and fixed outside
  the blocks (stem, position embeddings, head); they are scaled to the model's depth and batch.
- with gradient checkpointing (timm checkpoints each block): the saved tensors outside the
  blocks, each block's input (measured), and one block's saved tensors, recomputed during its
  backward.
The sum counts gradients beside the full activations, though at the start of backward none
exist yet: that excess (4 bytes per parameter) is about what AdamW's step later needs for its
temporaries (a copy of sqrt(v)), so the estimate stands for the peak of either.

Left out, so a card needs headroom beyond the estimate: the CUDA context (~0.5-1 GB), the
allocator's cache and fragmentation, DDP's gradient buckets under torchrun (+4 bytes per
parameter: another copy of the gradients), the gradients of the activations inside the block
being back-propagated, and the input batch (0.15 GB of fp32 pixels at 64 x 448 px).
EVA and EVA-02 attention runs a flash kernel on CPU as on CUDA, saving the same tensors. BEiT's
attention, with a learned relative-position bias, runs PyTorch's math kernel on CPU, which
saves the attention matrix and fp32 copies of q, k and v; CUDA's memory-efficient kernel keeps
bf16 q, k, v, the output and the log-sum-exp. Measured with that bias frozen (the CPU then takes
its flash kernel), BEiT-v2-L saves 7.7 instead of 11.2 MiB per block per image: its estimate
without checkpointing is high by about 5 GiB at 64 images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import timm
import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks
from torch.utils.flop_counter import FlopCounterMode

from reid.config import run
from reid.models import build_encoder
from reid.rules import Checked, PositiveInt

RECIPE = (
    ("eva02_large_patch14_448.mim_m38m_ft_in22k_in1k", 448),
    ("eva_giant_patch14_336.clip_ft_in1k", 336),
    ("beitv2_large_patch16_224.in1k_ft_in22k_in1k", 224),
)
GiB = 2**30


@dataclass
class Config(Checked):
    pairs: PositiveInt = 32  # pairs per GPU, as the recipe trains (2 x pairs images per forward)
    cards: tuple[PositiveInt, ...] = (24, 80)  # GPU memory sizes to check against, GiB
    format: Literal["text", "markdown"] = "text"  # markdown: the table for the README


class Activations(NamedTuple):
    """Bytes autograd saves for backward, split by what they scale with."""

    per_block_image: int
    per_block: int  # shared by the batch: autocast's bf16 weight copies, index buffers
    per_image: int  # outside the blocks: stem, position embeddings, head
    fixed: int
    block_input: int  # one block's input for one image: what checkpointing keeps

    def total(self, depth: int, images: int) -> int:
        """Everything saved by a forward of `images` through `depth` blocks."""
        return self.fixed + depth * self.per_block + images * (self.per_image + depth * self.per_block_image)

    def checkpointed(self, depth: int, images: int) -> int:
        """With each block checkpointed: the blocks' inputs, and one block's tensors at a time."""
        return (self.fixed + images * self.per_image + depth * images * self.block_input
                + self.per_block + images * self.per_block_image)


class Row(NamedTuple):
    model: str
    img_size: int
    params: int
    features: int
    gflops: float
    memory: float  # GiB
    memory_checkpointed: float  # GiB


def saved_bytes(model: nn.Module, images: torch.Tensor) -> tuple[int, int]:
    """(bytes of the tensors saved for backward in a bf16-autocast forward, bytes of the first
    block's input). Each storage counts once; the parameters, counted apart, not at all."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}
    block_input: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    hook = model.blocks[0].register_forward_pre_hook(lambda _, args: block_input.append(args[0].nbytes))
    try:
        with saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
            model(images)
    finally:
        hook.remove()
    return sum(storages.values()), block_input[0]


def measure_activations(name: str, img_size: int) -> Activations:
    """Saved bytes of `name` cut to 1 and 2 blocks, on 1 and 2 images, solved for each part."""
    counts: dict[tuple[int, int], int] = {}
    block_inputs: dict[tuple[int, int], int] = {}
    for depth in (1, 2):
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size, depth=depth).train()
        for images in (1, 2):
            counts[depth, images], block_inputs[depth, images] = saved_bytes(
                model, torch.randn(images, 3, img_size, img_size))
    per_block_image = counts[2, 2] - counts[1, 2] - counts[2, 1] + counts[1, 1]
    per_block = counts[2, 1] - counts[1, 1] - per_block_image
    per_image = counts[1, 2] - counts[1, 1] - per_block_image
    fixed = counts[1, 1] - per_image - per_block - per_block_image
    return Activations(per_block_image, per_block, per_image, fixed, block_inputs[1, 1])


def forward_flops(model: nn.Module, img_size: int) -> int:
    """FLOPs of one image's forward, counted on the meta device (no memory, no compute)."""
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, img_size, img_size, device="meta"))
    return counter.get_total_flops()


def describe(name: str, img_size: int, pairs: int) -> Row:
    """One table row: the model built by build_encoder on the meta device, and its memory."""
    with torch.device("meta"):
        model, _ = build_encoder(name, pretrained=False, img_size=img_size)
    params = sum(p.numel() for p in model.parameters())
    activations = measure_activations(name, img_size)
    depth, images = len(model.blocks), 2 * pairs
    return Row(name, img_size, params, model.num_features, forward_flops(model, img_size) / 1e9,
               (16 * params + activations.total(depth, images)) / GiB,
               (16 * params + activations.checkpointed(depth, images)) / GiB)


def fits(row: Row, card: int) -> str:
    """Whether the estimate fits a card of `card` GiB: as it is, only with checkpointing, or not."""
    if row.memory <= card:
        return "yes"
    return "with checkpointing" if row.memory_checkpointed <= card else "no"


def format_table(rows: list[Row], cards: tuple[int, ...], pairs: int, markdown: bool) -> str:
    """The rows as aligned text, or as a markdown table to paste into the README."""
    header = ["model", "img", "params (M)", "features", "fwd GFLOPs/img",
              f"train GiB/GPU ({pairs} pairs)", "with checkpointing", *(f"fits {c} GiB" for c in cards)]
    body = [[r.model, str(r.img_size), f"{r.params / 1e6:.1f}", str(r.features), f"{r.gflops:.1f}",
             f"{r.memory:.1f}", f"{r.memory_checkpointed:.1f}", *(fits(r, c) for c in cards)] for r in rows]
    if markdown:
        lines = [header, ["---"] + ["---:"] * (len(header) - 1), *body]
        return "\n".join(f"| {' | '.join(cells)} |" for cells in lines)
    lines = [header, *body]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def aligned(line: list[str]) -> str:
        return "  ".join([line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)])

    return "\n".join(map(aligned, lines))


def main(cfg: Config) -> None:
    rows = [describe(name, size, cfg.pairs) for name, size in RECIPE]
    print(format_table(rows, cfg.cards, cfg.pairs, cfg.format == "markdown"))


if __name__ == "__main__":
    run(main, Config)
