"""Bad requests to the embedders and to export.py end in one line naming what is at fault, before
any work: test-time sizes, memory, sidecar fields, devices, what `embed` is given, export's
--out, --images and --opset; and a checkpoint's recorded sha256 is that of the bytes loaded."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import export, run_script, save_jpegs, write_checkpoint
from reid import onnx_export
from reid.api import Embedder, OnnxEmbedder
from reid.embedding import BaseEmbedder, scaled_sizes
from reid.errors import ReidError
from reid.images import DataConfig
from reid.models import build_encoder
from reid.onnx_export import export_graph, graph_opset
from reid.synthetic.crops import sample_crops


@pytest.fixture(scope="module")
def lite0():
    return Embedder.from_pretrained("efficientnet_lite0", img_size=64, workers=1)


@pytest.fixture(scope="module")
def crops():
    return sample_crops(3, seed=11)


def one_line(info: pytest.ExceptionInfo) -> str:
    text = str(info.value)
    assert "\n" not in text
    return text


# 5. Test-time sizes and memory

@pytest.mark.parametrize("scale,size", [(1e-9, 0), (0.2, 13), (1000, 64000), (33, 2112)])
def test_scales_beyond_sane_input_sizes_are_refused_naming_scale_and_size(lite0, crops, scale, size):
    with pytest.raises(ReidError) as info:
        Embedder(lite0.model, lite0.data_config, scales=(1.0, scale)).embed(crops)
    assert f"scale {scale:g} makes {size}-pixel input" in one_line(info)
    assert "16 to 2048 pixels" in str(info.value) and "takes 64-pixel input only" not in str(info.value)


def test_sane_scales_and_the_trained_size_itself_are_kept():
    assert scaled_sizes(64, [0.25, 1.0, 32.0]) == [16, 64, 2048]
    assert scaled_sizes(8, [1.0]) == [8], "a model trained small still embeds at its own size"
    for bad, why in (([float("nan")], "expected a finite number"), ([float("inf")], "expected a finite number"),
                     ([], "expected at least 1 value"), ([1.0, -1.0], "expected above 0")):
        with pytest.raises(ReidError, match=f"^scales={re.escape(repr(bad))}: {why}$"):
            scaled_sizes(64, bad)


class Hungry(nn.Module):
    """Features at `fits` pixels; any other size fails as `fail` says (a real CPU allocation)."""

    num_features = 3

    def __init__(self, fits: int, fail: str):
        super().__init__()
        self.fits, self.fail = fits, fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.fits:
            if self.fail == "cpu":
                torch.empty(1 << 50, dtype=torch.uint8)  # more than any machine has
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return x.mean(dim=(2, 3))


DATA = DataConfig(32, (0.5,) * 3, (0.5,) * 3)


class Raising(BaseEmbedder):
    """An embedder whose every batch raises `error`, as another runtime than torch might."""

    dim = 3

    def __init__(self, error: Exception):
        super().__init__(DATA, "raising", workers=1)
        self.error = error

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        raise self.error


@pytest.mark.parametrize("fail", ["cpu", "cuda"])
def test_out_of_memory_on_a_size_probe_is_an_error_not_a_refused_size(crops, fail):
    embedder = Embedder(Hungry(32, fail), DATA, scales=(1.0, 2.0))
    with pytest.raises(ReidError) as info:
        embedder.embed(crops)
    assert "out of memory running the model on one 64-pixel image on cpu: lower the scales" in one_line(info)
    assert 64 not in embedder._accepted, "nothing learnt about the size"


def test_out_of_memory_while_embedding_says_which_batch_and_what_to_lower(crops):
    with pytest.raises(ReidError) as info:
        Embedder(Hungry(31, "cpu"), DATA).embed(crops, batch_size=2)
    assert "out of memory embedding batches of 2 images at 32 px: lower batch_size, or the scales" in one_line(info)

    onnxruntime_like = Exception("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for "
                                 "requested buffer")
    with pytest.raises(ReidError, match="out of memory embedding batches of 3 images at 32 px"):
        Raising(onnxruntime_like).embed(crops, batch_size=3)


def test_other_model_errors_pass_on_as_they_are(crops):
    with pytest.raises(KeyError):
        Raising(KeyError("a bug")).embed(crops, batch_size=3)


@pytest.mark.parametrize("img_size, why", [(0, "expected at least 1"), (-5, "expected at least 1"),
                                           (32.5, "expected int"), (True, "expected int"), ("32", "expected int")])
def test_img_size_must_be_a_positive_whole_number(img_size, why):
    message = f"^img_size={re.escape(repr(img_size))}: {why}$"
    with pytest.raises(ReidError, match=message):
        build_encoder("test_vit", pretrained=False, img_size=img_size)
    with pytest.raises(ReidError, match=message):
        Embedder.from_pretrained("efficientnet_lite0", img_size=img_size)


# 6. The ONNX sidecar and the device

BAD_FIELDS = [
    ("input", "mean", "abc", "input.mean is 'abc', expected 3 finite numbers"),
    ("input", "mean", [0.5, 0.5], "input.mean is [0.5, 0.5], expected 3 finite numbers"),
    ("input", "mean", [0.5, float("nan"), 0.5], "input.mean is [0.5, nan, 0.5], expected 3 finite numbers"),
    ("input", "std", [0.5, 0, 0.5], "input.std is [0.5, 0, 0.5], expected 3 finite numbers above 0"),
    ("input", "std", [-0.5, 0.5, 0.5], "input.std is [-0.5, 0.5, 0.5], expected 3 finite numbers above 0"),
    ("input", "interpolation", "banana", "input.interpolation is 'banana', expected one of bilinear, bicubic"),
    ("input", "colour_order", "BGR", "input.colour_order is 'BGR', expected 'RGB'"),
    ("input", "layout", "NHWC", "input.layout is 'NHWC', expected 'NCHW'"),
    ("input", "img_size", 0, "input.img_size is 0, expected a whole number of pixels"),
    ("input", "img_size", "32", "input.img_size is '32', expected a whole number of pixels"),
    ("output", "dim", -1, "output.dim is -1, expected a whole number"),
    (None, "input", "x", "input is 'x', expected an object"),
    (None, "opset", 18.5, "opset is 18.5, expected a whole number"),
]


@pytest.fixture(scope="module")
def graph_copy(vit_export, tmp_path_factory):
    """A copy of the exported graph, whose sidecar each test rewrites; and the good sidecar."""
    root, _ = vit_export
    folder = tmp_path_factory.mktemp("sidecars")
    shutil.copy(root / "model.onnx", folder / "alone.onnx")
    return folder / "alone.onnx", json.loads((root / "model.json").read_text())


@pytest.mark.parametrize("section,field,value,message", BAD_FIELDS)
def test_every_sidecar_field_is_checked_when_read(graph_copy, section, field, value, message):
    path, good = graph_copy
    bad = json.loads(json.dumps(good))
    (bad[section] if section else bad)[field] = value
    path.with_suffix(".json").write_text(json.dumps(bad))
    with pytest.raises(ReidError) as info:
        OnnxEmbedder(path)
    assert one_line(info).startswith(f"{path.with_suffix('.json')}: {message}")


def test_a_missing_sidecar_field_is_named(graph_copy):
    path, good = graph_copy
    bad = json.loads(json.dumps(good))
    del bad["input"]["std"]
    path.with_suffix(".json").write_text(json.dumps(bad))
    with pytest.raises(ReidError, match=r"alone.json: no input.std field"):
        OnnxEmbedder(path)


@pytest.mark.parametrize("device,message", [("banana", "device=banana: expected auto, cpu, cuda or cuda:<index>"),
                                            ("cuda:x", "device=cuda:x: expected auto, cpu, cuda or cuda:<index>"),
                                            ("cuda:7", "device=cuda:7 but this onnxruntime has no CUDA provider")])
def test_a_bad_onnx_device_is_blamed_not_the_model(vit_export, tmp_path, device, message):
    root, _ = vit_export
    if device == "cuda:7":
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            pytest.skip("this onnxruntime has CUDA: the message is onnxruntime's, on the device")
    for path in (root / "model.onnx", tmp_path / "missing.onnx"):
        with pytest.raises(ReidError) as info:
            OnnxEmbedder(path, device=device)
        assert one_line(info).startswith(message) and str(path) not in str(info.value)


# 15. What embed takes

def test_one_image_or_path_instead_of_a_list_is_refused_in_one_line(lite0, vit_export, tmp_path):
    path = save_jpegs(tmp_path, sample_crops(1, seed=2))[0]
    graph = OnnxEmbedder(vit_export[0] / "model.onnx")
    for images, kind in [(str(path), "str"), (path, "PosixPath"), (path.read_bytes(), "bytes"),
                         (Image.open(path), "JpegImageFile"), (np.zeros((8, 8, 3), np.uint8), "ndarray"),
                         (7, "int"), (None, "NoneType")]:
        for embedder in (lite0, graph):
            with pytest.raises(ReidError) as info:
                embedder.embed(images)
            assert one_line(info).startswith(f"images: a {kind}, not a sequence of images: pass a list")


def test_a_generator_and_a_stacked_array_are_sequences_of_images(lite0, crops):
    stack = np.stack([np.asarray(Image.fromarray(c).resize((20, 40))) for c in crops])
    expected = lite0.embed(list(stack))
    np.testing.assert_array_equal(lite0.embed(stack), expected)
    np.testing.assert_array_equal(lite0.embed(image for image in stack), expected)


def test_an_empty_or_closed_pil_image_is_named(lite0, crops, tmp_path):
    path = save_jpegs(tmp_path, crops[:1])[0]
    closed = Image.open(path)
    closed.close()
    for images, message in [([crops[0], Image.new("RGB", (0, 0))], "images[1]: a PIL image of 0 x 0 pixels"),
                            ([closed], "images[0]: a PIL image whose pixels cannot be read")]:
        with pytest.raises(ReidError) as info:
            lite0.embed(images, batch_size=1)
        assert one_line(info).startswith(message)


# 11. Provenance

def test_the_sha256_recorded_is_of_the_bytes_loaded_even_when_the_file_is_replaced(tmp_path, crops, monkeypatch):
    """Training replaces last.pt while an embedder loads it: the digest and the weights must agree."""
    ckpt = write_checkpoint(tmp_path / "last.pt", "test_vit", 32, seed=1)
    kept = shutil.copy(ckpt, tmp_path / "as_loaded.pt")
    newer = write_checkpoint(tmp_path / "newer.pt", "test_vit", 32, seed=2)
    load = torch.load

    def load_then_replace(*args, **kwargs):
        out = load(*args, **kwargs)
        shutil.copy(newer, ckpt)  # a new epoch's last.pt lands just after the read
        return out

    monkeypatch.setattr(torch, "load", load_then_replace)
    embedder = Embedder.from_checkpoint(ckpt)
    monkeypatch.undo()
    reference = Embedder.from_checkpoint(kept)
    assert embedder.source["checkpoint_sha256"] == reference.source["checkpoint_sha256"]
    np.testing.assert_array_equal(embedder.embed(crops), reference.embed(crops))


# 8. export.py: the whole request checked before the first model loads

def test_export_refuses_a_folder_as_out_without_advising_overwrite(tmp_path):
    (tmp_path / "x.onnx").mkdir()
    result = run_script("export.py", f"--checkpoint={tmp_path / 'none'}", f"--out={tmp_path / 'x.onnx'}",
                        "--overwrite=true")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "x.onnx is a folder" in result.stderr and "overwrite" not in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["x.onnx"] and not any((tmp_path / "x.onnx").iterdir())


def test_export_says_images_is_a_file_before_loading_the_model(tmp_path):
    (tmp_path / "crops.jpeg").write_bytes(b"")
    result = run_script("export.py", f"--checkpoint={tmp_path / 'none'}", f"--out={tmp_path / 'm.onnx'}",
                        f"--images={tmp_path / 'crops.jpeg'}")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "crops.jpeg is a file, not a folder" in result.stderr and "no checkpoint" not in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["crops.jpeg"]


@pytest.mark.parametrize("opset", ["17", "26", "99"])
def test_export_refuses_opsets_it_cannot_write_naming_those_it_can(vit_export, tmp_path, opset):
    result = export(vit_export[1], tmp_path / "m.onnx", f"--opset={opset}")
    assert result.returncode == 1 and f"--opset={opset}: expected at least 18 and at most 25" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_export_writes_the_asked_opset_under_a_folder_it_creates(vit_export, tmp_path):
    out = tmp_path / "deploy" / "v1" / "model.onnx"
    result = export(vit_export[1], out, "--opset=20")
    assert result.returncode == 0, result.stderr
    assert graph_opset(out) == 20 and json.loads(out.with_suffix(".json").read_text())["opset"] == 20


def test_an_opset_the_exporter_cannot_write_is_refused_before_it_runs(vit_export, tmp_path):
    """Asked for opset 26, torch.onnx writes 18 without a word: the rule stops it at the door."""
    with pytest.raises(ReidError, match="^opset=26: expected at least 18 and at most 25$"):
        export_graph(Embedder.from_checkpoint(vit_export[1]), sample_crops(2), tmp_path / "m.onnx", 26)
    assert list(tmp_path.iterdir()) == []


def test_a_graph_saved_at_another_opset_than_asked_is_refused(vit_export, tmp_path, monkeypatch):
    """Where the exporter falls back to another opset within the range (its converter fails for
    one model), the opset read back from the saved graph says so."""
    monkeypatch.setattr(onnx_export, "graph_opset", lambda path: 18)
    with pytest.raises(ReidError, match="could not convert test_vit to opset 20 .it wrote 18.: export with --opset=18"):
        export_graph(Embedder.from_checkpoint(vit_export[1]), sample_crops(2), tmp_path / "m.onnx", 20)
