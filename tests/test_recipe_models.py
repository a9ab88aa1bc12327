"""The recipe's three backbones on the meta device, and bench.recipe_models's table of them."""

from __future__ import annotations

import pytest
import timm
import torch

from bench import recipe_models
from bench.recipe_models import RECIPE, Row, format_table, measure_activations, saved_bytes
from reid.config import run
from reid.models import build_encoder

FEATURES = {
    "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k": 1024,
    "eva_giant_patch14_336.clip_ft_in1k": 1408,
    "beitv2_large_patch16_224.in1k_ft_in22k_in1k": 1024,
}


@pytest.mark.parametrize("name, size", RECIPE)
def test_recipe_model_builds_on_meta_with_its_feature_size(name, size):
    with torch.device("meta"):
        model, data = build_encoder(name, pretrained=False, img_size=size)
    assert data.img_size == size
    assert all(p.is_meta for p in model.parameters()), "no memory, no weights"
    assert model.num_features == FEATURES[name]
    assert model(torch.empty(2, 3, size, size, device="meta")).shape == (2, FEATURES[name])


def test_saved_bytes_scale_as_measured_from_one_and_two_blocks_and_images():
    """The bench scales counts taken at depth and batch 1 and 2; a third point checks the scaling."""
    name, size = RECIPE[2]  # BEiT-v2-L at 224 px: the cheapest to run on CPU
    activations = measure_activations(name, size)
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=0, img_size=size, depth=3).train()
    saved, block_input = saved_bytes(model, torch.randn(3, 3, size, size))
    assert saved == activations.total(depth=3, images=3)
    assert block_input == 3 * activations.block_input == 3 * (1 + (size // 16) ** 2) * 1024 * 4  # fp32 residual
    assert activations.checkpointed(24, 64) < activations.total(24, 64)


@pytest.mark.slow
def test_the_bench_prints_a_markdown_row_per_model(capsys):
    """Builds on meta, then measures each model's activations on CPU: 5-15 s on two cores."""
    run(recipe_models.main, recipe_models.Config, ["--format=markdown"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + len(RECIPE) and lines[1].startswith("| --- |")
    for (name, size), line in zip(RECIPE, lines[2:], strict=True):
        cells = [c.strip() for c in line.strip("| ").split(" | ")]
        assert cells[:2] == [name, str(size)] and cells[3] == str(FEATURES[name])
        assert float(cells[6]) < float(cells[5]), "checkpointing saves memory"


def test_text_table_is_aligned_and_says_where_each_model_fits():
    rows = [Row("small", 224, 10**6, 64, 1.0, 2.0, 1.0), Row("a_longer_name", 448, 10**9, 1408, 900.0, 90.0, 30.0)]
    lines = format_table(rows, (24, 80), pairs=32, markdown=False).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].split()[-2:] == ["yes", "yes"]
    assert lines[2].endswith("no  with checkpointing")
