"""Stage 6: a trained model -> ONNX, with its preprocessing beside it, verified before it is kept.

    python export.py --checkpoint=checkpoints/lite0_128 --out=model.onnx
    python export.py --checkpoint=checkpoints/eva02_l448/last.pt --out=deploy/eva02.onnx --images=data/crops

What it writes and how it verifies it, and running the result without PyTorch: README.md, stage 6.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from reid.api import OnnxEmbedder, open_embedder
from reid.config import format_config, run
from reid.embedder import Embedder
from reid.errors import ReidError
from reid.files import move_into_place, require_writable, write_json
from reid.images import SUFFIXES, ImageLike
from reid.layouts import list_images
from reid.onnx_embedder import sidecar_path
from reid.onnx_export import VERIFY_BATCHES, Opset, export_graph, max_differences, sidecar
from reid.outputs import held, staging_folder
from reid.rules import Checked, Positive
from reid.synthetic.crops import sample_crops


@dataclass
class Config(Checked):
    checkpoint: Path = Path("checkpoints/eva02_l448")  # run folder (best.pt), .pt file, or pretrained:<model>[@size]
    out: Path = Path("model.onnx")  # the graph; the sidecar goes beside it as <name>.json
    images: Path | None = None  # a folder of crops to verify on (the first 13 by name); none: generated crops
    opset: Opset = 18  # ONNX opset of the graph (torch's exporter writes 18 to 25)
    tolerance: Positive = 1e-4  # largest |ONNX - PyTorch| feature difference accepted
    overwrite: bool = False  # replace an existing export at --out


def verification_images(folder: Path | None) -> tuple[list[ImageLike], str]:
    """The images to verify on, and a few words saying which."""
    need = max(VERIFY_BATCHES)
    if folder is None:
        return list(sample_crops(need)), f"{need} generated player crops"
    if folder.exists() and not folder.is_dir():
        raise ReidError(f"--images={folder} is a file, not a folder: give the folder of crops to verify on")
    names = [n for n in list_images(folder) if n.lower().endswith(SUFFIXES)]
    if len(names) < need:
        raise ReidError(f"--images={folder}: {len(names)} .jpg/.jpeg/.png images, the check needs {need}")
    return [folder / n for n in names[:need]], f"the first {need} images of {folder}"


def check_out(cfg: Config) -> None:
    """A .onnx path we may write: never over an earlier export unless asked."""
    if cfg.out.suffix != ".onnx":
        raise ReidError(f"--out={cfg.out}: the file name must end in .onnx")
    if folders := [p for p in (cfg.out, sidecar_path(cfg.out), cfg.out.with_name(cfg.out.name + ".data"))
                   if p.is_dir()]:
        raise ReidError(f"--out={cfg.out}: {folders[0]} is a folder, which an export never replaces: "
                        "give the path of a .onnx file to write")
    existing = [p for p in (cfg.out, sidecar_path(cfg.out)) if p.exists()]
    if existing and not cfg.overwrite:
        raise ReidError(f"{existing[0]} exists: pass --overwrite=true to replace it, or another --out")
    require_writable(cfg.out.parent, "out")


def keep(staged: Path, out: Path) -> None:
    """Move a verified export into place: the data file, the graph, then its sidecar."""
    data = out.with_name(out.name + ".data")
    moved = [staged.with_name(staged.name + ".data"), staged]
    for src, dst in zip(moved, [data, out], strict=True):
        if src.exists():
            move_into_place(src, dst)
        elif dst.exists():
            dst.unlink()
    move_into_place(sidecar_path(staged), sidecar_path(out))


def export_verified(cfg: Config, embedder: Embedder, images: list[ImageLike], described: str) -> dict[int, float]:
    """Export into a staging folder beside --out, verify, and only then move the files into place;
    the largest difference at each verification batch size."""
    staging = staging_folder(cfg.out)
    try:
        staged = staging / cfg.out.name
        export_graph(embedder, images[:2], staged, cfg.opset)
        record = sidecar(embedder, staged)  # hashes the graph once: it can be gigabytes
        write_json(record, sidecar_path(staged))
        diffs = max_differences(embedder, OnnxEmbedder(staged, workers=1), images)
        worst = max(diffs, key=diffs.get)
        if diffs[worst] > cfg.tolerance:
            raise ReidError(f"the ONNX graph differs from PyTorch by max |diff| {diffs[worst]:.2e} at batch {worst} "
                            f"(tolerance {cfg.tolerance:.0e}, on {described}): nothing written")
        verified = {"images": described, "tolerance": cfg.tolerance,
                    "max_abs_diff": {str(size): diff for size, diff in diffs.items()}}
        write_json(record | {"verified": verified}, sidecar_path(staged))
        keep(staged, cfg.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return diffs


def main(cfg: Config) -> None:
    print(format_config(cfg))
    check_out(cfg)
    if str(cfg.checkpoint).endswith(".onnx"):
        raise ReidError(f"--checkpoint={cfg.checkpoint} is already an ONNX file: give the run folder or .pt file")
    images, described = verification_images(cfg.images)
    with held(cfg.out, "out"):  # a second export to the same --out stops at once
        diffs = export_verified(cfg, open_embedder(cfg.checkpoint), images, described)
    report = ", ".join(f"{diff:.1e} at batch {size}" for size, diff in diffs.items())
    print(f"verified on {described}: max |ONNX - PyTorch| {report} (tolerance {cfg.tolerance:.0e})")
    print(f"wrote {cfg.out} and {sidecar_path(cfg.out)}")


if __name__ == "__main__":
    run(main, Config)
