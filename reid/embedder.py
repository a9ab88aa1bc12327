"""`Embedder`: a PyTorch encoder and its preprocessing, from any images to unit-length features.

`embed`, its test-time scales and its batching are `reid.embedding.BaseEmbedder`'s, shared with
`OnnxEmbedder`; this module adds what PyTorch brings: checkpoints, devices, mixed precision,
flip, and the sizes a backbone takes. predict.py, the engine's validation, export.py's
verification and identify.py all embed through it. Use it through `reid.api`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid.device import Amp, amp_dtype, autocast, resolve_device
from reid.embedding import BaseEmbedder, Scales, out_of_memory
from reid.errors import ReidError
from reid.images import DataConfig
from reid.models import build_encoder, read_checkpoint
from reid.rules import Count, PositiveInt, checked


def checkpoint_file(path: Path) -> Path:
    """A run folder means its best.pt."""
    path = Path(path)
    path = path / "best.pt" if path.is_dir() else path
    if not path.is_file():
        raise ReidError(f"no checkpoint at {path}")
    return path


class Embedder(BaseEmbedder):
    """A PyTorch encoder with the preprocessing it was trained with.

    Test-time augmentation: `flip` adds the features of the mirrored image before the
    normalisation (not in an exported graph, which normalises inside); `scales`,
    `own_size_if_refused` and `workers` as `BaseEmbedder`. `amp` (bf16, fp16, off) applies on
    CUDA only.
    """

    @checked
    def __init__(self, model: nn.Module, data_config: DataConfig, device: str | torch.device = "cpu",
                 amp: Amp = "off", flip: bool = False, workers: Count | None = None,
                 source: dict[str, str] | None = None, scales: Scales = (1.0,),
                 own_size_if_refused: bool = False):
        self.source = source or {}
        super().__init__(data_config, self.source.get("model", "the model"), workers, scales, own_size_if_refused)
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.dtype = amp_dtype(amp, self.device)
        self.flip = flip
        self._accepted: dict[int, bool] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", **options: Any) -> "Embedder":
        """The encoder of a run folder (its best.pt) or of a best.pt / last.pt file."""
        file = checkpoint_file(Path(path))
        ckpt, sha256 = read_checkpoint(file)
        name = ckpt["config"].get("model")
        if not isinstance(name, str):
            raise ReidError(f"{file}: its config names no model")
        data_config = DataConfig.from_dict(ckpt["data_config"])
        model, _ = build_encoder(name, pretrained=False, img_size=data_config.img_size)
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise ReidError(f"{file}: its weights do not fit the model {name}: {str(exc).splitlines()[0]}") from None
        source = {"checkpoint": str(file.resolve()), "checkpoint_sha256": sha256, "model": name}
        return cls(model.eval(), data_config, device, source=source, **options)

    @classmethod
    @checked
    def from_pretrained(cls, name: str, img_size: PositiveInt | None = None, device: str | torch.device = "cpu",
                        **options: Any) -> "Embedder":
        """A backbone with its library weights, untrained here: the baseline training has to beat."""
        model, data_config = build_encoder(name, pretrained=True, img_size=img_size)
        source = {"checkpoint": f"pretrained:{name}" + (f"@{img_size}" if img_size else ""), "model": name,
                  "weights": "as the library ships them (untrained here)"}
        return cls(model.eval(), data_config, device, source=source, **options)

    @property
    def dim(self) -> int:
        """The length of a feature vector."""
        return int(self.model.num_features)

    @checked
    def accepts(self, size: PositiveInt) -> bool:
        """Whether the model takes `size`-pixel input: a convolutional backbone takes any size, a
        transformer only sizes its patches divide (and, built for one size, that size alone).
        Running out of memory on the probe says nothing of that, and is an error of its own."""
        if size == self.data_config.img_size:
            return True
        if size not in self._accepted:  # one probe per size, not one per call of embed
            try:
                with self.running():
                    self.model(torch.zeros(1, 3, size, size, device=self.device))
                self._accepted[size] = True
            except (AssertionError, RuntimeError, ValueError) as exc:  # timm asserts on the size; torch on shapes
                if out_of_memory(exc):
                    raise ReidError(f"out of memory running {self.name} on one "
                                    f"{size}-pixel image on {self.device}: lower the scales") from None
                self._accepted[size] = False
        return self._accepted[size]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Unit-length float32 features of a preprocessed (B, 3, S, S) batch on this device."""
        with autocast(self.device, self.dtype):
            out = self.model(batch).float()
            if self.flip:
                out = out + self.model(batch.flip(-1)).float()
        return F.normalize(out, dim=-1)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The model in eval mode and without autograd for the block, as it was afterwards."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.model.train(was_training)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """Unit-length float32 features of a preprocessed (B, 3, S, S) float32 batch."""
        # Channels-last input makes every convolution run in that layout: about 1.7x on CPU.
        x = torch.from_numpy(batch).to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        return self.forward(x).cpu().numpy()

