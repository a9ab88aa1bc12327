"""Which process, device and precision: shared by training, embedding and the benchmarks."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, Literal

import torch
import torch.distributed as dist

from reid.errors import ReidError
from reid.rules import checked, parse_device


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device `device` names (reid.rules.parse_device), one torch has here: `auto` is
    CUDA when there is one; CUDA without one, or a GPU index this machine lacks, is an error
    (torch would fail later, or run elsewhere)."""
    kind, index = parse_device(device)
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(kind, index)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ReidError(f"device={device} but CUDA is not available (torch {torch.__version__})")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ReidError(f"device={device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


Amp = Literal["bf16", "fp16", "off"]  # the autocast dtype on CUDA; off is fp32


@checked
def amp_dtype(amp: Amp, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp`: None, i.e. fp32, off CUDA."""
    if device.type != "cuda" or amp == "off":
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def amp_note(amp: str, device: torch.device) -> str | None:
    """The line that says an `amp` setting does not apply here (None where it does): CPU runs
    keep fp32, so a CPU run's figures do not depend on the amp field."""
    if amp == "off" or device.type == "cuda":
        return None
    return f"amp={amp} applies on CUDA only: this {device.type} run computes in fp32"


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision in `dtype` on the device's autocast (CUDA; on CPU bfloat16 too, when a
    caller asks for it directly); plain fp32 when no dtype is given."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class RankContext:
    """This process's place in the run: its rank, how many ranks there are, and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def say(self, text: str) -> None:
        """Print from the first process only: a run of N processes speaks with one voice."""
        if self.main:
            print(text)


def init_distributed(device: str) -> RankContext:
    """One process per device under torchrun (NCCL on CUDA, gloo on CPU); else one process."""
    use_cuda = resolve_device(device).type == "cuda"
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if world_size > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return RankContext(rank, world_size, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"))


@contextlib.contextmanager
def distributed(device: str) -> Iterator[RankContext]:
    """`init_distributed` for the span of a stage: the process group is torn down however the
    stage ends, so a failed rank leaves nothing for its peers to wait on."""
    ctx = init_distributed(device)
    try:
        yield ctx
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
