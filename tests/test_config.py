"""The --field=value convention shared by every script."""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import REPO, SMOKE_TRAIN, bad_arguments, call, run_script
from reid.config import parse_args, run, save_config, usage
from reid.errors import ReidError
from reid.rules import PositiveInt, Probability


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


STAGES = ["download.py", "preprocess_data.py", "train_our_post.py", "train_our_post_resnet.py", "predict.py",
          "sim_fuse.py", "dissim_fuse.py", "export.py", "identify.py", "demo.py", "track.py", "link_tracks.py"]
# (script, the bad argument, words the one line must hold), generated from each field's rules
CASES = [(script, bad, words) for script in STAGES
         for bad, words in bad_arguments(importlib.import_module(Path(script).stem).Config)]


def test_every_stage_has_bad_values_to_refuse():
    assert {script for script, _, _ in CASES} == set(STAGES)


def folders(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _fields(script: str) -> set[str]:
    return {f.name for f in dataclasses.fields(importlib.import_module(Path(script).stem).Config)}


@pytest.mark.parametrize("script, bad, words", CASES, ids=[f"{s}{a}" for s, a, _ in CASES])
def test_bad_value_is_one_line_and_writes_nothing(tmp_path, script, bad, words):
    where = [f"--data_dir={tmp_path / 'data'}", f"--out_dir={tmp_path / 'out'}",
             f"--checkpoint_dir={tmp_path / 'ck'}"]
    args = [a for a in where if a.split("=")[0].lstrip("-") in _fields(script)]
    args += SMOKE_TRAIN if script.startswith("train") else []
    result = call(script, *args, bad)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"error: {bad.split('=')[0]}=") and words in line, line
    assert folders(tmp_path) == set(), "nothing may be written"


@pytest.mark.slow
@pytest.mark.parametrize("script, bad, words", [next(c for c in CASES if c[0] == s) for s in
                                                 dict.fromkeys(c[0] for c in CASES)])
def test_a_real_process_prints_one_line_and_no_traceback(tmp_path, script, bad, words):
    """The same table, one case per script, as a user's shell runs it."""
    args = [a for a in (f"--data_dir={tmp_path / 'data'}", f"--out_dir={tmp_path / 'out'}",
                        f"--checkpoint_dir={tmp_path / 'ck'}") if a.split("=")[0].lstrip("-") in _fields(script)]
    done = run_script(script, *args, *(SMOKE_TRAIN if script.startswith("train") else []), bad, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and words in done.stderr
    assert folders(tmp_path) == set()


def test_a_tilde_in_a_path_means_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    import preprocess_data
    from reid.config import parse_args

    assert parse_args(preprocess_data.Config, ["--data_dir=~/dd"]).data_dir == tmp_path / "dd"



ENTRY_POINTS = sorted(".".join(p.relative_to(REPO).with_suffix("").parts)  # every stage script and bench
                      for p in [*REPO.glob("*.py"), *REPO.glob("bench/*.py")] if "run(main, Config)" in p.read_text())
HELP_HEAD = 12  # lines --help may print before the first option: a summary and the command lines


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_help_is_a_summary_the_command_lines_and_every_option(name, capsys):
    module = importlib.import_module(name)
    run(module.main, module.Config, ["--help"])
    lines = capsys.readouterr().out.splitlines()
    head = lines[:lines.index(next(line for line in lines if line.startswith("options (--field=value)")))]
    assert 3 <= len(head) <= HELP_HEAD, "\n".join(head)
    commands = [line.strip() for line in head[2:] if line.strip()]
    assert commands and all(c.startswith(("python ", "torchrun ", "make ")) for c in commands), "\n".join(head)
    listed = {line.split("=", 1)[0].strip() for line in lines if line.startswith("  --")}
    assert listed == {f"--{f.name}" for f in dataclasses.fields(module.Config)}
