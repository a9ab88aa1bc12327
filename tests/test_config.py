"""The --field=value convention shared by every script."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_script
from reid.config import PositiveInt, Probability, parse_args, save_config, usage
from reid.errors import ReidError


@dataclass
class Example:
    data_dir: Path = Path("data")  # where the data are
    epochs: int = 8  # passes over the data
    lr: float = 4e-5  # peak learning rate
    amp: bool = True  # mixed precision on CUDA
    splits: tuple[str, ...] = ("test", "challenge")  # which splits
    checkpoint: str | None = None  # optional path


def test_values_are_typed_by_the_dataclass():
    cfg = parse_args(Example, ["--epochs=3", "--lr=1e-3", "--amp=false", "--splits=test",
                               "--data_dir=/x", "--checkpoint=none"])
    assert cfg == Example(Path("/x"), 3, 1e-3, False, ("test",), None)


@pytest.mark.parametrize("arg, words", [
    ("--epoch=3", ["unknown field --epoch", "epochs", "lr", "data_dir"]),
    ("--epochs=three", ["--epochs=three", "int"]),
    ("--amp=maybe", ["true or false"]),
    ("epochs=3", ["--field=value"]),
])
def test_bad_arguments_are_clear_errors(arg, words):
    with pytest.raises(ReidError) as err:
        parse_args(Example, [arg])
    assert all(w in str(err.value) for w in words)


def test_saved_config_is_plain_json_that_parses_back(tmp_path):
    cfg = parse_args(Example, ["--epochs=2", "--splits=a,b", "--checkpoint=x.pt"])
    save_config(cfg, tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved == {"data_dir": "data", "epochs": 2, "lr": 4e-5, "amp": True, "splits": ["a", "b"],
                     "checkpoint": "x.pt"}
    args = [f"--{k}={','.join(v) if isinstance(v, list) else v}" for k, v in saved.items()]
    assert parse_args(Example, args) == cfg


def test_help_lists_fields_with_defaults_and_comments():
    text = usage(Example)
    assert "--epochs=8" in text and "passes over the data" in text


def test_scripts_reject_unknown_fields_without_traceback():
    result = run_script("preprocess_data.py", "--n_fold=3")
    assert result.returncode == 1
    assert "unknown field --n_fold" in result.stderr and "n_folds" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_says_what_each_number_allows():
    @dataclass
    class Ranged:
        batch: PositiveInt = 8  # pairs per step
        p: Probability = 0.5  # chance of a flip

    text = usage(Ranged)
    assert "pairs per step [at least 1]" in text and "chance of a flip [at least 0 and at most 1]" in text
