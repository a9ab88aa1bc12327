"""`OnnxEmbedder`: an exported model run by onnxruntime, with no PyTorch anywhere.

export.py writes `model.onnx` (L2 normalisation inside the graph, any batch size) and
`model.json` beside it: the preprocessing, the feature size and the sha256 of the graph file.
The sidecar is checked against the graph before any image is read, and the images go through
`reid.images.preprocess`, the very function validation used in training. `embed`, its scales
and its batching are `reid.embedding.BaseEmbedder`'s, the same as `Embedder`'s.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from reid.embedding import BaseEmbedder, Scales
from reid.errors import ReidError
from reid.files import read_json
from reid.images import INTERPOLATIONS, DataConfig
from reid.rules import Count, checked, parse_device
from reid.runs import file_sha256

SIDECAR_FORMAT = "reid-onnx/1"
INPUT_NAME, OUTPUT_NAME = "images", "features"
LAYOUT, DTYPE, COLOUR_ORDER = "NCHW", "float32", "RGB"  # the one input export.py writes and reid.images makes


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _channels(positive: bool) -> Callable[[Any], bool]:
    """Three finite numbers, one per channel (above zero when `positive`)."""
    def check(value: Any) -> bool:
        return (isinstance(value, list) and len(value) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                        and (v > 0 or not positive) for v in value))
    return check


def _text(value: Any) -> bool:
    return isinstance(value, str)


# Every field export.py writes: (dotted name, the check, what it must be). A value the runtime uses
# is held to what reid.images can do with it; a descriptive one to its type.
SIDECAR_SCHEMA: list[tuple[str, Callable[[Any], bool], str]] = [
    ("model", _text, "a string"),
    ("input.name", lambda v: v == INPUT_NAME, f"{INPUT_NAME!r}"),
    ("input.layout", lambda v: v == LAYOUT, f"{LAYOUT!r}"),
    ("input.dtype", lambda v: v == DTYPE, f"{DTYPE!r}"),
    ("input.colour_order", lambda v: v == COLOUR_ORDER, f"{COLOUR_ORDER!r}"),
    ("input.img_size", _whole, "a whole number of pixels, at least 1"),
    ("input.resize", _text, "a string"),
    ("input.interpolation", lambda v: v in INTERPOLATIONS, f"one of {', '.join(INTERPOLATIONS)}"),
    ("input.scale", _text, "a string"),
    ("input.mean", _channels(positive=False), "3 finite numbers"),
    ("input.std", _channels(positive=True), "3 finite numbers above 0"),
    ("output.name", lambda v: v == OUTPUT_NAME, f"{OUTPUT_NAME!r}"),
    ("output.dim", _whole, "a whole number, at least 1"),
    ("output.l2_normalised", lambda v: v is True, "true"),
    ("opset", _whole, "a whole number, at least 1"),
    ("onnx_sha256", lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
     "64 hexadecimal digits"),
    ("external_data", lambda v: v is None or _text(v), "null or a file name"),
    ("checkpoint", _text, "a string"),
    ("checkpoint_sha256", _text, "a string"),
    ("verified", lambda v: v is None or isinstance(v, dict), "null or an object"),
]


def sidecar_problem(sidecar: dict[str, Any]) -> str | None:
    """The first field of `sidecar` that SIDECAR_SCHEMA refuses, said in a few words; None when
    every field is as export.py writes it."""
    for field, check, expected in SIDECAR_SCHEMA:
        value: Any = sidecar
        for i, key in enumerate(parts := field.split(".")):
            if not isinstance(value, dict):
                return f"{'.'.join(parts[:i])} is {_shown(value)}, expected an object"
            if key not in value:
                return f"no {field} field"
            value = value[key]
        if not check(value):
            return f"{field} is {_shown(value)}, expected {expected}"
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    sidecar = read_json(path, {})
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        raise ReidError(f"{path}: not a sidecar written by export.py (format {SIDECAR_FORMAT})")
    if problem := sidecar_problem(sidecar):
        raise ReidError(f"{path}: {problem} (export.py writes the sidecar: export again rather than edit it)")
    if sidecar.get("onnx_sha256") != file_sha256(onnx_path):
        raise ReidError(f"{path} was written for another graph than {onnx_path} (sha256 differs): "
                        "export again, or put the pair that belongs together side by side")
    return sidecar


def providers_for(device: str) -> list[Any]:
    """onnxruntime's providers for `device` (reid.rules.parse_device): CPU, or that GPU first
    (falling back to CPU per op); `auto` is the GPU where this onnxruntime has CUDA."""
    import onnxruntime as ort

    kind, index = parse_device(device)
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if kind == "cpu" or (kind == "auto" and not has_cuda):
        return ["CPUExecutionProvider"]
    if not has_cuda:
        raise ReidError(f"device={device} but this onnxruntime has no CUDA provider "
                        "(pip install onnxruntime-gpu on a machine with CUDA)")
    return [("CUDAExecutionProvider", {"device_id": index or 0}), "CPUExecutionProvider"]


def _check_graph(session: Any, sidecar: dict[str, Any], path: Path) -> None:
    """The graph's declared input and output sizes must be the sidecar's."""
    size, dim = int(sidecar["input"]["img_size"]), int(sidecar["output"]["dim"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or list(inputs[0].shape[1:]) != [3, size, size]:
        raise ReidError(f"{path}: the graph takes {[i.shape for i in inputs]}, its sidecar says "
                        f"[batch, 3, {size}, {size}]")
    if list(outputs[0].shape[1:]) != [dim]:
        raise ReidError(f"{path}: the graph gives {outputs[0].shape}, its sidecar says [batch, {dim}]")


class OnnxEmbedder(BaseEmbedder):
    """The same `embed` as `Embedder`, on onnxruntime (CPU by default, `device="cuda"` when the
    onnxruntime-gpu build and a GPU are there). An exported graph takes its own input size
    alone, so `scales` other than 1 are refused, or left out with `own_size_if_refused`
    (`BaseEmbedder`); `threads`: onnxruntime's intra-op threads, 0 for its default."""

    @checked
    def __init__(self, path: str | Path, device: str = "cpu", workers: Count | None = None, threads: Count = 0,
                 scales: Scales = (1.0,), own_size_if_refused: bool = False):
        import onnxruntime as ort

        providers = providers_for(device)  # a bad device is refused as such, before the model is touched
        self.path = Path(path)
        if self.path.suffix != ".onnx" or not self.path.is_file():
            raise ReidError(f"no .onnx file at {self.path}")
        self.sidecar = read_sidecar(self.path)
        super().__init__(data_config_of(self.sidecar), self.path.name, workers, scales, own_size_if_refused)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for a bad graph
            raise self._load_error(exc, device, options) from None
        _check_graph(self.session, self.sidecar, self.path)
        self.source = {"checkpoint": str(self.path.resolve()), "onnx_sha256": self.sidecar["onnx_sha256"],
                       "model": self.sidecar.get("model", ""),
                       "checkpoint_sha256": self.sidecar.get("checkpoint_sha256", "")}

    def _load_error(self, exc: Exception, device: str, options: Any) -> ReidError:
        """What to blame when onnxruntime cannot start the graph: on a GPU, the device when the
        graph loads on the CPU (a GPU index that is not there, a broken CUDA), else the file."""
        import onnxruntime as ort

        cause = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if device != "cpu":
            try:
                ort.InferenceSession(str(self.path), options, providers=providers_for("cpu"))
                return ReidError(f"device={device}: onnxruntime cannot run there ({cause}); the graph itself loads "
                                 "on cpu: check the GPU index (CUDA_VISIBLE_DEVICES) and the CUDA install")
            except Exception:  # the graph fails on the CPU too: the file is at fault
                pass
        return ReidError(f"{self.path}: onnxruntime cannot load it ({cause})")

    @property
    def dim(self) -> int:
        return int(self.sidecar["output"]["dim"])

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """Unit-length float32 features of a preprocessed batch: the graph normalises them itself."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
