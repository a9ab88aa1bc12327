"""The train scripts' presets: the three models the winning entry fused, and the small CNNs."""

from __future__ import annotations

import pytest

import train_our_post
import train_our_post_resnet
from helpers import run_script
from reid.config import expand_presets, parse_args, run
from reid.errors import ReidError


def preset(script, *argv: str):
    return parse_args(script.Config, expand_presets(list(argv), script.PRESETS))


@pytest.mark.parametrize("name, model, img_size, checkpointing", [
    ("eva02_l448", "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k", 448, True),
    ("eva_giant336", "eva_giant_patch14_336.clip_ft_in1k", 336, True),
    ("beitv2_l224", "beitv2_large_patch16_224.in1k_ft_in22k_in1k", 224, False),
])
def test_a_preset_picks_the_model_its_size_its_batch_and_its_run_folder(name, model, img_size, checkpointing):
    cfg = preset(train_our_post, f"--preset={name}")
    assert (cfg.model, cfg.img_size, cfg.batch_size, cfg.grad_checkpointing, cfg.run_name) == \
        (model, img_size, 32, checkpointing, name)
    assert cfg.lr == train_our_post.Config().lr, "the rest of the recipe is the script's"


def test_what_follows_a_preset_overrides_it_and_what_precedes_it_does_not():
    cfg = preset(train_our_post, "--batch_size=8", "--preset=eva_giant336", "--img_size=224", "--epochs=2")
    assert (cfg.batch_size, cfg.img_size, cfg.epochs) == (32, 224, 2)


def test_without_a_preset_the_defaults_hold():
    assert preset(train_our_post) == train_our_post.Config()
    lite = preset(train_our_post_resnet, "--preset=lite0")
    assert (lite.model, lite.img_size, lite.lr) == ("efficientnet_lite0", 224, train_our_post_resnet.Config().lr)


def test_an_unknown_preset_names_the_valid_ones():
    with pytest.raises(ReidError, match="unknown preset 'eva'; valid presets: eva02_l448, eva_giant336, beitv2_l224"):
        preset(train_our_post, "--preset=eva")


def test_an_unknown_preset_on_the_command_line_is_one_line():
    result = run_script("train_our_post_resnet.py", "--preset=resnet18")
    assert result.returncode == 1
    assert result.stderr == "error: unknown preset 'resnet18'; valid presets: resnet50, lite0\n"


def test_help_lists_every_preset_with_what_it_sets(capsys):
    run(train_our_post.main, train_our_post.Config, ["--help"], presets=train_our_post.PRESETS)
    text = capsys.readouterr().out
    for name, args in train_our_post.PRESETS.items():
        assert f"--preset={name}" in text and " ".join(args) in text
