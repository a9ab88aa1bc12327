"""export.py: a graph and its sidecar that give the PyTorch features, or nothing at all; and
OnnxEmbedder, which runs them without PyTorch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from helpers import REPO, call, export, save_jpegs, write_checkpoint
from reid.api import Embedder, OnnxEmbedder, open_embedder
from reid.errors import ReidError
from reid.runs import file_sha256
from reid.synthetic.crops import sample_crops


def assert_same_features(onnx_path, checkpoint, images):
    """OnnxEmbedder and Embedder.from_checkpoint agree within 1e-4 on 13 images and on 1."""
    exported, original = OnnxEmbedder(onnx_path), Embedder.from_checkpoint(checkpoint)
    for chosen in (images[:13], images[:1]):
        ours = exported.embed(chosen, batch_size=len(chosen))
        assert ours.shape == (len(chosen), original.dim)
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        assert np.abs(ours - original.embed(chosen, batch_size=len(chosen))).max() <= 1e-4


def test_the_export_verifies_itself_and_says_so(vit_export):
    root, ckpt = vit_export
    sidecar = json.loads((root / "model.json").read_text())
    assert sidecar["checkpoint_sha256"] == file_sha256(ckpt)
    assert sidecar["onnx_sha256"] == file_sha256(root / "model.onnx")
    assert sidecar["input"]["img_size"] == 32 and sidecar["input"]["colour_order"] == "RGB"
    assert sidecar["output"] == {"name": "features", "dim": 64, "l2_normalised": True}
    assert sidecar["opset"] >= 18 and sidecar["model"] == "test_vit"
    assert set(sidecar["verified"]["max_abs_diff"]) == {"1", "13"}
    assert max(sidecar["verified"]["max_abs_diff"].values()) <= 1e-4
    assert not (root / "model.onnx.data").exists(), "a small model is one file"
    assert sorted(p.name for p in root.iterdir()) == ["model.json", "model.onnx", "runs"], "no staging left"
    assert_same_features(root / "model.onnx", ckpt, sample_crops(13, seed=5))


def test_onnx_embedder_runs_without_pytorch(vit_export, tmp_path):
    """With torch (and everything built on it) impossible to import, as on a machine without it."""
    root, ckpt = vit_export
    paths = save_jpegs(tmp_path / "crops", sample_crops(4, seed=6))
    script = textwrap.dedent(f"""
        import sys
        for name in ("torch", "torchvision", "timm", "open_clip"):
            sys.modules[name] = None  # import fails as if not installed
        import numpy as np
        from reid.api import OnnxEmbedder
        feats = OnnxEmbedder({str(root / "model.onnx")!r}).embed({[str(p) for p in paths]!r}, batch_size=3)
        np.save({str(tmp_path / "feats.npy")!r}, feats)
        loaded = [m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] in ("torch", "timm")]
        print("loaded:", loaded)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded: []"
    expected = Embedder.from_checkpoint(ckpt).embed(paths)
    assert np.abs(np.load(tmp_path / "feats.npy") - expected).max() <= 1e-4


def test_an_exported_graph_takes_its_own_input_size_only(vit_export):
    root, _ = vit_export
    graph = OnnxEmbedder(root / "model.onnx", scales=(1.0, 1.5))
    assert graph.accepts(32) and not graph.accepts(48)
    with pytest.raises(ReidError, match="model.onnx takes 32-pixel input only, not 48"):
        graph.embed(sample_crops(2, seed=7))


def test_open_embedder_gives_a_graph_its_scales_and_the_own_size_fallback(vit_export):
    """The same test-time options reach an exported graph as a checkpoint: refused other sizes,
    or, asked to, its own size alone, as identify.py runs it."""
    root, _ = vit_export
    crops = sample_crops(2, seed=7)
    with pytest.raises(ReidError, match="model.onnx takes 32-pixel input only, not 40: leave its scales at 1"):
        open_embedder(root / "model.onnx", scales=(1.0, 1.25)).embed(crops)
    fallback = open_embedder(root / "model.onnx", scales=(1.0, 1.25), own_size_if_refused=True, workers=1)
    assert fallback.scales == (1.0, 1.25) and fallback.used_scales() == (1.0,)
    np.testing.assert_array_equal(fallback.embed(crops), OnnxEmbedder(root / "model.onnx").embed(crops))


def test_a_sidecar_that_is_missing_or_belongs_elsewhere_is_refused(vit_export, tmp_path):
    root, _ = vit_export
    alone = tmp_path / "alone.onnx"
    shutil.copy(root / "model.onnx", alone)
    with pytest.raises(ReidError, match="no sidecar"):
        OnnxEmbedder(alone)
    sidecar = json.loads((root / "model.json").read_text())
    (tmp_path / "alone.json").write_text(json.dumps({**sidecar, "onnx_sha256": "0" * 64}))
    with pytest.raises(ReidError, match="written for another graph"):
        OnnxEmbedder(alone)
    (tmp_path / "alone.json").write_text(json.dumps({**sidecar, "input": {**sidecar["input"], "img_size": 64}}))
    with pytest.raises(ReidError, match=r"the graph takes .*its sidecar says \[batch, 3, 64, 64\]"):
        OnnxEmbedder(alone)
    (tmp_path / "alone.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ReidError, match="not a sidecar written by export.py"):
        OnnxEmbedder(alone)


def test_an_existing_export_is_replaced_only_when_asked(vit_export, tmp_path):
    root, ckpt = vit_export
    shutil.copy(root / "model.onnx", tmp_path / "model.onnx")
    result = export(ckpt, tmp_path / "model.onnx")
    assert result.returncode == 1 and "pass --overwrite=true" in result.stderr
    assert file_sha256(tmp_path / "model.onnx") == file_sha256(root / "model.onnx"), "left as it was"
    other = write_checkpoint(tmp_path / "other.pt", "test_vit", 32, seed=9)
    assert export(other, tmp_path / "model.onnx", "--overwrite=true").returncode == 0
    assert json.loads((tmp_path / "model.json").read_text())["checkpoint_sha256"] == file_sha256(other)


def test_staging_left_by_a_killed_export_is_cleared_and_a_second_export_waits_for_none(vit_export, tmp_path):
    from reid.outputs import held

    root, ckpt = vit_export
    out = tmp_path / "deploy" / "model.onnx"
    with held(out, "out"):
        busy = export(ckpt, out)
    assert busy.returncode == 1 and "being written by another run" in busy.stderr
    assert not (tmp_path / "deploy").exists(), "the folder made for the lock goes with it"
    (tmp_path / "deploy").mkdir()
    for name in (".model.onnx.partial-killed1", ".model.onnx.partial-killed2"):
        (tmp_path / "deploy" / name).mkdir()
        (tmp_path / "deploy" / name / "model.onnx").write_bytes(b"\0" * 4096)
    assert export(ckpt, out).returncode == 0
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["model.json", "model.onnx"]


def test_a_failed_verification_leaves_no_onnx_behind(vit_export, tmp_path):
    root, ckpt = vit_export
    result = export(ckpt, tmp_path / "model.onnx", "--tolerance=1e-12")
    assert result.returncode == 1
    assert "differs from PyTorch by max |diff|" in result.stderr and "nothing written" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_export_arguments_are_one_line(vit_export, tmp_path):
    root, ckpt = vit_export
    (tmp_path / "few").mkdir()
    Image.fromarray(sample_crops(1)[0]).save(tmp_path / "few" / "a.jpeg")
    for args, message in [((tmp_path / "m.txt",), "must end in .onnx"),
                          ((tmp_path / "m.onnx", f"--images={tmp_path / 'few'}"), "the check needs 13"),
                          ((tmp_path / "m.onnx", f"--images={tmp_path / 'none'}"), "missing folder")]:
        result = export(ckpt, *args)
        assert result.returncode == 1 and message in result.stderr and result.stderr.count("\n") == 1
    result = export(root / "model.onnx", tmp_path / "m.onnx")
    assert result.returncode == 1 and "already an ONNX file" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name,img_size", [("eva02_tiny_patch14_224", 56), ("open_clip:ViT-B-32", 64)])
def test_transformer_families_export_with_parity(name, img_size, tmp_path):
    """A timm EVA-02 and an open_clip ViT (random init, small input) export and match PyTorch."""
    ckpt = write_checkpoint(tmp_path / "model.pt", name, img_size)
    result = export(ckpt, tmp_path / "model.onnx")
    assert result.returncode == 0, result.stderr
    assert_same_features(tmp_path / "model.onnx", ckpt, sample_crops(13, seed=8))


@pytest.mark.slow
def test_a_trained_lite0_run_exports_with_parity_on_test_images(tmp_path):
    """The issue's bar: train a tiny lite0 run, export it, and compare on 13 test images and 1."""
    data = tmp_path / "data"
    assert call("download.py", "--synthetic=true", "--synthetic_size=tiny", f"--data_dir={data}").returncode == 0
    assert call("preprocess_data.py", f"--data_dir={data}").returncode == 0
    trained = call("train_our_post_resnet.py", f"--data_dir={data}", f"--checkpoint_dir={tmp_path / 'ck'}",
                   "--run_name=lite0", "--model=efficientnet_lite0", "--img_size=64", "--num_workers=0",
                   "--epochs=1", "--max_steps_per_epoch=1", "--batch_size=4", "--rerank_eval=false")
    assert trained.returncode == 0, trained.stderr
    test_images = sorted((data / "data_reid" / "reid_test" / "gallery").iterdir())[:13]
    result = export(tmp_path / "ck" / "lite0", tmp_path / "lite0.onnx", f"--images={test_images[0].parent}")
    assert result.returncode == 0, result.stderr
    assert "verified on the first 13 images of" in result.stdout
    assert_same_features(tmp_path / "lite0.onnx", tmp_path / "ck" / "lite0", test_images)
