"""The embedding API: any images in, unit-length features out, in order, with bad input named."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from helpers import save_jpegs, write_checkpoint
from reid.api import Embedder, entry_name, open_embedder
from reid.errors import ReidError
from reid.images import DataConfig, preprocess
from reid.models import build_encoder
from reid.runs import file_sha256
from reid.synthetic.crops import sample_crops


@pytest.fixture(scope="module")
def lite0():
    return Embedder.from_pretrained("efficientnet_lite0", img_size=64, workers=2)


@pytest.fixture(scope="module")
def crops():
    return sample_crops(5, seed=3)


def test_paths_pil_images_and_arrays_mix_and_keep_their_order(lite0, crops, tmp_path):
    paths = save_jpegs(tmp_path, crops)
    decoded = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    mixed = [paths[0], Image.open(paths[1]), decoded[2], str(paths[3]), decoded[4]]
    together = lite0.embed(mixed, batch_size=2)
    alone = np.concatenate([lite0.embed([x], batch_size=1) for x in decoded])
    assert together.shape == (5, 1280) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.abs(together[0] - together[1]).max() > 1e-3, "different crops, different features"


def test_no_images_give_no_rows_of_the_feature_width(lite0):
    assert lite0.embed([]).shape == (0, 1280)


def test_embed_is_the_encoder_on_the_evaluation_transform(lite0, crops):
    """What `embed` returns is the model on `preprocess`'s output, normalised: nothing else."""
    batch = torch.from_numpy(np.stack([preprocess(c, lite0.data_config) for c in crops]))
    with torch.no_grad():
        expected = F.normalize(lite0.model.eval()(batch), dim=-1).numpy()
    np.testing.assert_allclose(lite0.embed(crops), expected, atol=1e-6)


def test_flip_adds_the_mirror_image(crops):
    model, data = build_encoder("test_vit", pretrained=False, img_size=32)
    flipped = Embedder(model, data, flip=True)
    batch = torch.from_numpy(np.stack([preprocess(c, data) for c in crops]))
    with torch.no_grad():
        expected = F.normalize(model.eval()(batch) + model(batch.flip(-1)), dim=-1).numpy()
    np.testing.assert_allclose(flipped.embed(crops), expected, atol=1e-5)
    assert np.abs(expected - Embedder(model, data).embed(crops)).max() > 1e-4


def test_scales_average_the_unit_features_of_each_input_size(crops):
    """Multi-scale test-time augmentation: the mean of each size's unit-length features, renormalised."""
    model, data = build_encoder("efficientnet_lite0", pretrained=False, img_size=32)
    at = {size: Embedder(model, dataclasses.replace(data, img_size=size)).embed(crops) for size in (32, 48)}
    both = Embedder(model, data, scales=(1.0, 1.5)).embed(crops)
    expected = at[32] + at[48]
    np.testing.assert_allclose(both, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)
    assert np.abs(both - at[32]).max() > 1e-3
    np.testing.assert_array_equal(Embedder(model, data, scales=(1.0,)).embed(crops), at[32])


def test_a_model_of_one_input_size_refuses_other_scales_in_one_line(crops):
    model, data = build_encoder("test_vit", pretrained=False, img_size=32)  # patches of 16 pixels
    embedder = Embedder(model, data, scales=(1.0, 1.25))
    assert embedder.accepts(32) and not embedder.accepts(40)
    with pytest.raises(ReidError, match="takes 32-pixel input only, not 40: leave its scales at 1"):
        embedder.embed(crops)
    fallback = Embedder(model, data, scales=(1.0, 1.25), own_size_if_refused=True)
    assert fallback.used_scales() == (1.0,)
    np.testing.assert_array_equal(fallback.embed(crops), Embedder(model, data).embed(crops))
    with pytest.raises(ReidError, match=r"^scales=\(1.0, 0.0\): expected above 0$"):
        Embedder(model, data, scales=(1.0, 0.0))


def test_a_training_model_stays_in_training_mode(crops):
    model, data = build_encoder("test_vit", pretrained=False, img_size=32)
    model.train()
    Embedder(model, data).embed(crops[:2])
    assert model.training


def test_bad_images_are_named_in_one_line(lite0, crops, tmp_path):
    corrupt = tmp_path / "corrupt.jpeg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    cases = {
        str(tmp_path / "missing.jpeg"): [crops[0], tmp_path / "missing.jpeg"],
        str(corrupt): [corrupt],
        r"images\[1\]: an array of shape \(10, 10\)": [crops[0], np.zeros((10, 10), np.uint8)],
        r"images\[0\]: an array of shape \(4, 4, 3\) and dtype float32": [np.zeros((4, 4, 3), np.float32)],
        r"images\[2\]: a int": [crops[0], crops[1], 7],
    }
    for pattern, images in cases.items():
        with pytest.raises(ReidError, match=pattern) as info:
            lite0.embed(images, batch_size=1)
        assert "\n" not in str(info.value)


def test_checkpoints_load_from_a_run_folder_best_or_last(tmp_path, crops):
    run = tmp_path / "runs" / "vit"
    best = write_checkpoint(run / "best.pt", "test_vit", 32, seed=1)
    write_checkpoint(run / "last.pt", "test_vit", 32, seed=2)
    from_run, from_best = Embedder.from_checkpoint(run), Embedder.from_checkpoint(best)
    from_last = open_embedder(run / "last.pt")
    np.testing.assert_array_equal(from_run.embed(crops), from_best.embed(crops))
    assert np.abs(from_last.embed(crops) - from_run.embed(crops)).max() > 1e-4, "last.pt holds other weights"
    assert from_run.source["checkpoint_sha256"] == file_sha256(best)
    assert from_run.data_config == DataConfig(32, (0.5,) * 3, (0.5,) * 3, "bicubic")
    assert entry_name(run) == "vit" and entry_name(best) == "vit"


def test_checkpoints_of_another_format_are_refused(tmp_path):
    plain = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, plain)
    text = tmp_path / "notes.pt"
    text.write_text("not weights")
    for path, pattern in [(plain, "not a checkpoint written by train_our_post"), (text, "cannot load"),
                          (tmp_path / "nothing", "no checkpoint at")]:
        with pytest.raises(ReidError, match=pattern):
            Embedder.from_checkpoint(path)


def test_pretrained_entries_are_checked(tmp_path):
    for entry, pattern in [("pretrained:", "name a model"), ("pretrained:efficientnet_lite0@x", "whole number"),
                           (tmp_path / "gone.onnx", "no .onnx file")]:
        with pytest.raises(ReidError, match=pattern):
            open_embedder(entry)
    assert entry_name("pretrained:efficientnet_lite0@128") == "pretrained_efficientnet_lite0_128"
