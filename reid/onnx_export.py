"""An `Embedder` to ONNX with torch's own exporter, and the check that the export is faithful.

The graph takes a (batch, 3, S, S) float32 batch, any batch size, and returns unit-length
features: the L2 normalisation is inside it. Everything before the graph (decoding, resize
with padding, mean and std) is written to the sidecar and replayed by `reid.images`.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid.embedder import Embedder
from reid.errors import ReidError
from reid.images import RESIZE_RULE, ImageLike, as_rgb, preprocess
from reid.onnx_embedder import INPUT_NAME, OUTPUT_NAME, SIDECAR_FORMAT, OnnxEmbedder
from reid.rules import Range, checked
from reid.runs import file_sha256

ONE_FILE_LIMIT = 1 << 30  # above this many bytes of weights, they go to <name>.onnx.data (protobuf stops at 2 GiB)
VERIFY_BATCHES = (1, 13)  # a lone image and an odd batch that was never traced
# torch.onnx writes opset 18 and converts it (onnxscript's version converter) up to 25; asked for
# more, it keeps 18 without a word. export_graph checks what was written all the same.
OPSETS = range(18, 26)
Opset = Annotated[int, Range(lo=OPSETS.start, hi=OPSETS.stop - 1)]


class _Normalized(nn.Module):
    """The encoder followed by the L2 normalisation, so the graph gives what `embed` gives."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder(images).float(), dim=-1)


def weight_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


@checked
def export_graph(embedder: Embedder, examples: Sequence[ImageLike], path: Path, opset: Opset) -> None:
    """Write the graph of `embedder` to `path` (fp32, on CPU, batch axis dynamic). The exporter's
    chatter is kept back and only its last line is shown if it fails."""
    if embedder.flip:
        raise ReidError("flip test-time augmentation is not exported: export with flip off")
    model = _Normalized(embedder.model).float().cpu().eval()
    batch = torch.from_numpy(np.stack([preprocess(as_rgb(x, i), embedder.data_config) for i, x in enumerate(examples)]))
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), torch.no_grad():
            program = torch.onnx.export(
                model, (batch,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}})
            program.save(str(path), external_data=weight_bytes(model) > ONE_FILE_LIMIT)
        written = graph_opset(path)
    except Exception as exc:  # the exporter raises many types; the model is what cannot be exported
        raise ReidError(f"torch.onnx cannot export {embedder.name}: "
                        f"{str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__}"
                        ) from None
    finally:
        embedder.model.to(embedder.device)
    if written != opset:
        raise ReidError(f"torch.onnx could not convert {embedder.name} to opset {opset} "
                        f"(it wrote {written}): export with --opset={written}")


def graph_opset(path: Path) -> int:
    """The default-domain opset the saved graph declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


def sidecar(embedder: Embedder, path: Path) -> dict[str, Any]:
    """What a runtime needs besides the graph, and where the graph came from (`verified` is
    filled in once the export has been checked)."""
    cfg = embedder.data_config
    data = path.with_name(path.name + ".data")
    return {
        "format": SIDECAR_FORMAT,
        "model": embedder.source.get("model", ""),
        "input": {"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32", "colour_order": "RGB",
                  "img_size": cfg.img_size, "resize": RESIZE_RULE, "interpolation": cfg.interpolation,
                  "scale": "pixel / 255, then (value - mean) / std per channel",
                  "mean": list(cfg.mean), "std": list(cfg.std)},
        "output": {"name": OUTPUT_NAME, "dim": embedder.dim, "l2_normalised": True},
        "opset": graph_opset(path),
        "onnx_sha256": file_sha256(path),
        "external_data": data.name if data.exists() else None,
        "checkpoint": embedder.source.get("checkpoint", ""),
        "checkpoint_sha256": embedder.source.get("checkpoint_sha256", ""),
        "verified": None,
    }


def max_differences(embedder: Embedder, exported: OnnxEmbedder, images: Sequence[ImageLike]) -> dict[int, float]:
    """max |ONNX - PyTorch| over the features of the first 1 and the first 13 images, each
    embedded as one batch of that size."""
    if len(images) < max(VERIFY_BATCHES):
        raise ReidError(f"verification needs {max(VERIFY_BATCHES)} images, got {len(images)}")
    out = {}
    for size in VERIFY_BATCHES:
        chosen = list(images[:size])
        ours = embedder.embed(chosen, batch_size=size)
        theirs = exported.embed(chosen, batch_size=size)
        out[size] = float(np.abs(ours - theirs).max())
    return out
