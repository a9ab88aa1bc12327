"""build_encoder: timm and open_clip names, weight files, offline failures."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from reid.errors import ReidError
from reid.models import build_encoder


def test_timm_transformer_takes_the_image_size_and_gives_features():
    model, data = build_encoder("test_vit", pretrained=False, img_size=48)
    assert data.img_size == 48
    assert model(torch.zeros(2, 3, 48, 48)).shape == (2, model.num_features)


def test_cnn_keeps_any_size_and_grad_checkpointing_switches_on():
    model, data = build_encoder("test_resnet", pretrained=False, img_size=40, grad_checkpointing=True)
    assert data.img_size == 40 and model.grad_checkpointing
    assert model(torch.zeros(1, 3, 40, 40)).shape == (1, model.num_features)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_file_loads_and_a_foreign_one_is_named(tmp_path, suffix):
    torch.manual_seed(3)
    source, _ = build_encoder("test_vit", pretrained=False, img_size=32)
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"state_dict": state}, path)
    loaded, _ = build_encoder("test_vit", pretrained=str(path), img_size=32)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(loaded.eval()(x), source.eval()(x))
    with pytest.raises(ReidError, match="does not fit test_resnet"):
        build_encoder("test_resnet", pretrained=str(path))


@pytest.mark.slow
def test_open_clip_visual_tower_with_and_without_projection():
    with_proj, data = build_encoder("open_clip:ViT-B-32", pretrained=False)
    without, _ = build_encoder("open_clip:ViT-B-32", pretrained=False, clip_projection=False)
    x = torch.zeros(1, 3, data.img_size, data.img_size)
    assert with_proj(x).shape == (1, with_proj.num_features) == (1, 512)
    assert without(x).shape == (1, without.num_features) == (1, 768)


@pytest.mark.slow
def test_open_clip_at_another_size_takes_its_weights_with_a_resized_position_embedding(tmp_path):
    """The bar of issue 17: built at 320 px, a ViT-B-32 used to crash at its first forward."""
    import open_clip

    native = open_clip.create_model("ViT-B-32")
    path = tmp_path / "vit_b_32.pt"
    torch.save({"state_dict": native.state_dict()}, path)
    wider, data = build_encoder("open_clip:ViT-B-32", pretrained=str(path), img_size=320)
    assert data.img_size == 320
    assert wider(torch.zeros(2, 3, 320, 320)).shape == (2, 512)
    assert wider.visual.positional_embedding.shape == (1 + (320 // 32) ** 2, 768)
    assert torch.equal(wider.visual.conv1.weight, native.visual.conv1.weight), "the weights were loaded"


@pytest.mark.parametrize("name, words", [
    ("no_such_model", "unknown timm model"),
    ("open_clip:NoSuch-Arch", "unknown open_clip model"),
])
def test_unknown_names_are_clear(name, words):
    with pytest.raises(ReidError, match=words):
        build_encoder(name, pretrained=False)


def test_pretrained_must_be_a_flag_or_a_file():
    with pytest.raises(ReidError, match="^pretrained='/no/such/file.pt': expected true or false or an existing file$"):
        build_encoder("test_vit", pretrained="/no/such/file.pt")


def test_the_suite_really_runs_offline():
    """conftest sets HF_HUB_OFFLINE before the hub library is imported, so the library sees it."""
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE


def test_open_clip_hub_weights_offline_fail_with_a_way_out():
    with pytest.raises(ReidError, match="--pretrained="):
        build_encoder("open_clip:ViT-B-32:openai", pretrained=True)


def test_timm_hub_weights_offline_fail_at_once_with_a_way_out():
    with pytest.raises(ReidError, match="--pretrained="):
        build_encoder("resnet50.tv2_in1k", True)


def test_open_clip_without_a_tag_is_not_silently_untrained():
    with pytest.raises(ReidError, match=r"ViT-B-32 names no pretrained weights: use open_clip:ViT-B-32:<tag>"):
        build_encoder("open_clip:ViT-B-32", pretrained=True)
