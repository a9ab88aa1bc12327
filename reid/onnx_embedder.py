"""`OnnxEmbedder`: an exported model run by onnxruntime, with no PyTorch anywhere.

export.py writes `model.onnx` (L2 normalisation inside the graph, any batch size) and
`model.json` beside it: the preprocessing, the feature size and the sha256 of the graph file.
The sidecar is checked against the graph before any image is read, and the images go through
`reid.images.preprocess`, the very function validation used in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from reid.errors import ReidError
from reid.images import DataConfig, ImageLike, default_workers, embed_at_scales
from reid.io import read_record
from reid.runs import file_sha256

SIDECAR_FORMAT = "reid-onnx/1"
INPUT_NAME, OUTPUT_NAME = "images", "features"


def sidecar_path(onnx_path: Path) -> Path:
    """model.onnx -> model.json."""
    return Path(onnx_path).with_suffix(".json")


def data_config_of(sidecar: dict[str, Any]) -> DataConfig:
    """The preprocessing a sidecar records."""
    given = sidecar["input"]
    return DataConfig(int(given["img_size"]), tuple(given["mean"]), tuple(given["std"]), given["interpolation"])


def read_sidecar(onnx_path: Path) -> dict[str, Any]:
    """The sidecar of `onnx_path`, refused unless it is complete and was written for this graph."""
    path = sidecar_path(onnx_path)
    if not path.is_file():
        raise ReidError(f"{onnx_path}: no sidecar {path} beside it (export.py writes both; the sidecar "
                        "holds the preprocessing the model needs)")
    sidecar = read_record(path)
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        raise ReidError(f"{path}: not a sidecar written by export.py (format {SIDECAR_FORMAT})")
    try:
        data_config_of(sidecar)
        int(sidecar["output"]["dim"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ReidError(f"{path}: incomplete sidecar ({type(exc).__name__}: {exc})") from None
    if sidecar.get("onnx_sha256") != file_sha256(onnx_path):
        raise ReidError(f"{path} was written for another graph than {onnx_path} (sha256 differs): "
                        "export again, or put the pair that belongs together side by side")
    return sidecar


def providers_for(device: str) -> list[str]:
    """onnxruntime's providers for `device`: CPU, or CUDA first (falling back to CPU per op)."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device != "cuda":
        raise ReidError(f"device={device}: expected cpu or cuda")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ReidError("device=cuda but this onnxruntime has no CUDA provider "
                        "(pip install onnxruntime-gpu on a machine with CUDA)")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _check_graph(session: Any, sidecar: dict[str, Any], path: Path) -> None:
    """The graph's declared input and output sizes must be the sidecar's."""
    size, dim = int(sidecar["input"]["img_size"]), int(sidecar["output"]["dim"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or list(inputs[0].shape[1:]) != [3, size, size]:
        raise ReidError(f"{path}: the graph takes {[i.shape for i in inputs]}, its sidecar says "
                        f"[batch, 3, {size}, {size}]")
    if list(outputs[0].shape[1:]) != [dim]:
        raise ReidError(f"{path}: the graph gives {outputs[0].shape}, its sidecar says [batch, {dim}]")


class OnnxEmbedder:
    """The same `embed` as `Embedder`, on onnxruntime (CPU by default, `device="cuda"` when the
    onnxruntime-gpu build and a GPU are there)."""

    def __init__(self, path: str | Path, device: str = "cpu", workers: int | None = None, threads: int = 0,
                 scales: Sequence[float] = (1.0,)):
        import onnxruntime as ort

        self.path = Path(path)
        if self.path.suffix != ".onnx" or not self.path.is_file():
            raise ReidError(f"no .onnx file at {self.path}")
        self.sidecar = read_sidecar(self.path)
        self.data_config = data_config_of(self.sidecar)
        self.workers = default_workers() if workers is None else workers
        self.scales = tuple(scales)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers_for(device))
        except Exception as exc:  # onnxruntime raises its own exception types for a bad graph
            raise ReidError(f"{self.path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:300]})") from None
        _check_graph(self.session, self.sidecar, self.path)
        self.source = {"checkpoint": str(self.path.resolve()), "onnx_sha256": self.sidecar["onnx_sha256"],
                       "model": self.sidecar.get("model", ""),
                       "checkpoint_sha256": self.sidecar.get("checkpoint_sha256", "")}

    @property
    def dim(self) -> int:
        return int(self.sidecar["output"]["dim"])

    def embed(self, images: Sequence[ImageLike], batch_size: int = 64, progress: bool = False,
              desc: str = "embedding") -> np.ndarray:
        """(N, dim) float32 features, rows of unit length, in input order."""
        return embed_at_scales(lambda batch: self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0], images,
                               self.data_config, self.scales, self.accepts, self.path.name, self.dim, batch_size,
                               self.workers, progress, desc)

    def accepts(self, size: int) -> bool:
        """Whether the graph takes `size`-pixel input: an exported graph has one input size."""
        return size == self.data_config.img_size
