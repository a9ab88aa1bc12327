"""Use a trained model anywhere: the public way from images to features.

    from reid.api import Embedder, OnnxEmbedder
    features = Embedder.from_checkpoint("checkpoints/lite0_128").embed(["a.jpeg", "b.jpeg"])
    features = OnnxEmbedder("model.onnx").embed(["a.jpeg", "b.jpeg"])

`Embedder` (PyTorch) is imported on first use, so that `OnnxEmbedder` works where PyTorch is
not installed. Both are `BaseEmbedder`s: the same `embed`, `scales`, `accepts` and
`embed_across_ranks`. `open_embedder` turns what a stage's `--checkpoints` lists into one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from reid.embedding import BaseEmbedder
from reid.errors import ReidError
from reid.onnx_embedder import OnnxEmbedder

if TYPE_CHECKING:
    from reid.embedder import Embedder

__all__ = ["BaseEmbedder", "Embedder", "OnnxEmbedder", "open_embedder", "entry_name", "PRETRAINED"]

PRETRAINED = "pretrained:"


def __getattr__(name: str) -> Any:
    if name == "Embedder":
        from reid.embedder import Embedder

        return Embedder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pretrained_entry(text: str) -> tuple[str, int | None]:
    """(model name, input side or None) of `pretrained:<model>[@size]`."""
    name, _, size = text.removeprefix(PRETRAINED).partition("@")
    if not name:
        raise ReidError(f"{text}: name a model after {PRETRAINED}, e.g. {PRETRAINED}efficientnet_lite0@128")
    if size and not (size.isdigit() and int(size) > 0):
        raise ReidError(f"{text}: the size after @ must be a whole number of pixels, at least 1")
    return name, int(size) if size else None


def entry_name(entry: str | Path) -> str:
    """A short name for an entry, checked on the way: its run folder's name, the .pt or .onnx
    file's stem, or pretrained_<model>[_<size>]."""
    text = str(entry)
    if text.startswith(PRETRAINED):
        name, size = pretrained_entry(text)
        return "pretrained_" + name.replace(":", "_").replace("/", "_") + (f"_{size}" if size else "")
    path = Path(entry)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise ReidError(f"no .onnx file at {path}")
        return path.stem
    from reid.embedder import checkpoint_file

    path = checkpoint_file(path)
    return path.parent.name if path.name in ("best.pt", "last.pt") else path.stem


def check_entry(entry: str | Path, flip: bool = False) -> str:
    """`entry_name`, and a refusal of what `open_embedder` would refuse of the entry with these
    options: a stage checks every entry with this before the first model loads."""
    name = entry_name(entry)
    if flip and Path(str(entry)).suffix == ".onnx":
        raise ReidError(f"{entry}: flip test-time augmentation is not in an exported graph; "
                        "use the checkpoint, or leave flip off")
    return name


def input_paths(entries: Sequence[str | Path]) -> list[Path]:
    """The files and folders that `entries` read (every entry but the pretrained ones)."""
    return [Path(e) for e in entries if not str(e).startswith(PRETRAINED)]


def open_embedder(entry: str | Path, device: str = "cpu", amp: str = "off", flip: bool = False,
                  **options: Any) -> BaseEmbedder:
    """The embedder of a run folder, a best.pt / last.pt file, an exported `.onnx` file, or
    `pretrained:<model>[@size]` (a backbone as its library ships it). `options` (`scales`,
    `own_size_if_refused`, `workers`) are `BaseEmbedder`'s, for every kind; `amp` and `flip` are
    PyTorch's (an exported graph runs in float32 and refuses flip)."""
    text = str(entry)
    if Path(text).suffix == ".onnx":
        check_entry(entry, flip)
        return OnnxEmbedder(text, device="cpu" if str(device) == "auto" else str(device), **options)
    from reid.embedder import Embedder

    if text.startswith(PRETRAINED):
        name, size = pretrained_entry(text)
        return Embedder.from_pretrained(name, img_size=size, device=device, amp=amp, flip=flip, **options)
    return Embedder.from_checkpoint(text, device=device, amp=amp, flip=flip, **options)
