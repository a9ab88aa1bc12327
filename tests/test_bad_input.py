"""Bad values end in one clear line naming the option and what it allows, before anything is written.

Each case runs a stage's entry point as its command line would (conftest.call: anything but a
clean one-line error raises, so a passing case also shows there was no traceback).
"""

from __future__ import annotations

import pytest

from conftest import call

TRAIN = ["--model=efficientnet_lite0", "--img_size=64", "--batch_size=8", "--num_workers=0", "--device=cpu",
         "--max_steps_per_epoch=2", "--epochs=1", "--rerank_eval=false"]

CASES = [
    # (script, the bad argument, words the one line must hold)
    ("train_our_post_resnet.py", "--batch_size=0", "at least 1"),
    ("train_our_post_resnet.py", "--batch_size=-3", "at least 1"),
    ("train_our_post_resnet.py", "--accum_steps=0", "at least 1"),
    ("train_our_post_resnet.py", "--accum_steps=-1", "at least 1"),
    ("train_our_post_resnet.py", "--max_steps_per_epoch=-1", "at least 0"),
    ("train_our_post_resnet.py", "--epochs=0", "at least 1"),
    ("train_our_post_resnet.py", "--epochs=-2", "at least 1"),
    ("train_our_post_resnet.py", "--lr=nan", "finite"),
    ("train_our_post_resnet.py", "--lr=inf", "finite"),
    ("train_our_post_resnet.py", "--lr=-1", "above 0"),
    ("train_our_post_resnet.py", "--lr_end=nan", "finite"),
    ("train_our_post_resnet.py", "--weight_decay=nan", "finite"),
    ("train_our_post_resnet.py", "--img_size=-64", "at least 1"),
    ("train_our_post_resnet.py", "--img_size=0", "at least 1"),
    ("train_our_post_resnet.py", "--random_erasing=2", "at most 1"),
    ("train_our_post_resnet.py", "--flip_p=5", "at most 1"),
    ("train_our_post_resnet.py", "--label_smoothing=3", "below 1"),
    ("train_our_post_resnet.py", "--warmup_epochs=-5", "at least 0"),
    ("train_our_post_resnet.py", "--clip_grad=nan", "finite"),
    ("train_our_post_resnet.py", "--eval_batch_size=0", "at least 1"),
    ("train_our_post_resnet.py", "--num_workers=-1", "at least 0"),
    ("train_our_post_resnet.py", "--seed=-1", "at least 0"),
    ("train_our_post_resnet.py", "--fold=-2", "at least -1"),
    ("train_our_post_resnet.py", "--run_name=", "plain folder name"),
    ("train_our_post_resnet.py", "--run_name=../escaped", "plain folder name"),
    ("train_our_post.py", "--label_smoothing=1", "below 1"),
    ("predict.py", "--batch_size=0", "at least 1"),
    ("predict.py", "--k1=0", "at least 1"),
    ("predict.py", "--lambda_value=5", "at most 1"),
    ("predict.py", "--lambda_value=nan", "finite"),
    ("predict.py", "--visualize_queries=0", "at least 1"),
    ("predict.py", "--visualize_queries=-3", "at least 1"),
    ("download.py", "--retries=-1", "at least 0"),
    ("download.py", "--seed=-1", "at least 0"),
    ("download.py", "--timeout=0", "above 0"),
    ("download.py", "--backoff=-1", "at least 0"),
    ("preprocess_data.py", "--n_folds=0", "at least 2"),
    ("preprocess_data.py", "--n_folds=1", "at least 2"),
    ("preprocess_data.py", "--n_folds=-2", "at least 2"),
    ("dissim_fuse.py", "--topk=0", "at least 1"),
    ("dissim_fuse.py", "--min_votes=0", "at least 1"),
    ("sim_fuse.py", "--weights=1,nan", "finite"),
    ("sim_fuse.py", "--weights=1,-1", "at least 0"),
]


def folders(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("script, bad, words", CASES, ids=[f"{s}{a}" for s, a, _ in CASES])
def test_bad_value_is_one_line_and_writes_nothing(tmp_path, script, bad, words):
    where = [f"--data_dir={tmp_path / 'data'}", f"--out_dir={tmp_path / 'out'}",
             f"--checkpoint_dir={tmp_path / 'ck'}"]
    args = [a for a in where if a.split("=")[0].lstrip("-") in _fields(script)]
    args += TRAIN if script.startswith("train") else []
    result = call(script, *args, bad)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"error: {bad.split('=')[0]}=") and words in line, line
    assert folders(tmp_path) == set(), "nothing may be written"


def test_predict_size_after_at_is_checked(tmp_path):
    for bad in ("abc", "0"):
        result = call("predict.py", f"--data_dir={tmp_path}", f"--out_dir={tmp_path / 'out'}",
                      f"--checkpoints=pretrained:efficientnet_lite0@{bad}")
        assert result.returncode == 1 and "whole number of pixels" in result.stderr
        assert not (tmp_path / "out").exists()


def test_a_tilde_in_a_path_means_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    import preprocess_data
    from reid.config import parse_args

    assert parse_args(preprocess_data.Config, ["--data_dir=~/dd"]).data_dir == tmp_path / "dd"


def _fields(script: str) -> set[str]:
    import dataclasses
    import importlib
    from pathlib import Path

    return {f.name for f in dataclasses.fields(importlib.import_module(Path(script).stem).Config)}
